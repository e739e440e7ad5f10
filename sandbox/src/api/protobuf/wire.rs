//! The protobuf wire format: varints, length-delimited fields, fixed-width numbers.

use crate::error::ApiError;

fn truncated() -> ApiError {
    ApiError::bad_request("unable to decode protobuf body: truncated message")
}

/// A cursor over one protobuf message.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// A base-128 varint.
    pub fn varint(&mut self) -> Result<u64, ApiError> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let (&byte, rest) = self.buf.split_first().ok_or_else(truncated)?;
            self.buf = rest;
            if shift < 64 {
                value |= u64::from(byte & 0x7f) << shift;
            }
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ApiError::bad_request(
            "unable to decode protobuf body: varint too long",
        ))
    }

    /// The next field key (tag, wire type), or `None` at the end.
    pub fn key(&mut self) -> Result<Option<(u32, u8)>, ApiError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| truncated())?;
        // The low three bits are the wire type by definition.
        Ok(Some((tag, (key & 7) as u8)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ApiError> {
        if n > self.buf.len() {
            return Err(truncated());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// A length-delimited field.
    pub fn bytes(&mut self) -> Result<&'a [u8], ApiError> {
        let len = usize::try_from(self.varint()?).map_err(|_| truncated())?;
        self.take(len)
    }

    /// A length-delimited UTF-8 string.
    pub fn string(&mut self) -> Result<String, ApiError> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    /// A little-endian 64-bit value.
    pub fn fixed64(&mut self) -> Result<u64, ApiError> {
        let bytes: [u8; 8] = self.take(8)?.try_into().map_err(|_| truncated())?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// Skips a field of the given wire type.
    pub fn skip(&mut self, wire_type: u8) -> Result<(), ApiError> {
        match wire_type {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => self.bytes().map(drop),
            5 => self.take(4).map(drop),
            other => Err(ApiError::bad_request(format!(
                "unable to decode protobuf body: wire type {other}"
            ))),
        }
    }
}
