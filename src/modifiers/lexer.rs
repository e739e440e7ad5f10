//! Tokens of the expr-lang subset: numbers as expr-lang scans them (`1_000`, `.5`, `1e3`,
//! `0x1F`), identifiers (letters, digits, `_`, `$`), the word operators `and`, `or`, `not`, and
//! punctuation. Characters outside the subset (strings, member access, pipes) are rejected here
//! with a hint, at their column.

use super::formula::FormulaError;

/// A token. Numbers keep expr-lang's two kinds: a literal with a fraction or an exponent is a
/// float, any other an int (which matters: `7 % 2` works, `7.0 % 2` does not).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// `42`, `1_000`, `0x1F`, `0o17`, `0b101`.
    Int(i64),
    /// `2.5`, `.5`, `1e3`, `1.`.
    Float(f64),
    /// A trigger name, a function name, or `true`/`false`/`nil` (the parser tells them apart).
    Ident(String),
    /// An operator or punctuation, as written (`and`, `or` and `not` included).
    Op(&'static str),
    Eof,
}

/// A token and the 1-based character column it starts at.
#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) column: usize,
}

/// How a token is named in "expected …, found …" messages.
pub(super) fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Int(i) => format!("number {i}"),
        Tok::Float(f) => format!("number {f}"),
        Tok::Ident(s) => format!("'{s}'"),
        Tok::Op(s) => format!("'{s}'"),
        Tok::Eof => "end of formula".to_string(),
    }
}

/// A syntax error at `column`.
pub(super) fn syntax(column: usize, message: impl Into<String>) -> FormulaError {
    FormulaError::Syntax {
        column,
        message: message.into(),
    }
}

// expr-lang's identifiers: letters, digits, `_` and `$`, not starting with a digit.
fn is_ident_start(c: char) -> bool {
    c == '_' || c == '$' || c.is_alphabetic()
}
fn is_ident_char(c: char) -> bool {
    is_ident_start(c) || c.is_alphanumeric()
}

/// Multi-character operators first, so `**` wins over `*` and `??` over `?`.
const OPERATORS: [&str; 22] = [
    "**", "==", "!=", "<=", ">=", "&&", "||", "??", "^", "*", "/", "%", "+", "-", "<", ">", "!",
    "?", ":", "(", ")", ",",
];

/// Splits `src` into tokens, always ending with [`Tok::Eof`]. Columns count characters, not
/// bytes, so they match what a person counts in the formula (trigger names may be Unicode).
pub(super) fn lex(src: &str) -> Result<Vec<Token>, FormulaError> {
    let chars: Vec<char> = src.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // `.5` is a number in expr-lang; a '.' before anything else is member access,
            // which the subset rejects below.
            let (tok, next) = lex_number(&chars, i)?;
            tokens.push(Token { tok, column });
            i = next;
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // expr-lang lexes these words as operators: no trigger can be referred to by them.
            let tok = match word.as_str() {
                "and" => Tok::Op("and"),
                "or" => Tok::Op("or"),
                "not" => Tok::Op("not"),
                _ => Tok::Ident(word),
            };
            tokens.push(Token { tok, column });
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let Some(op) = OPERATORS.iter().find(|op| rest.starts_with(**op)) else {
                return Err(syntax(column, unexpected_char(c)));
            };
            tokens.push(Token {
                tok: Tok::Op(op),
                column,
            });
            i += op.chars().count();
        }
    }
    tokens.push(Token {
        tok: Tok::Eof,
        column: chars.len() + 1,
    });
    Ok(tokens)
}

/// The message for a character outside the subset, with a hint where a KEDA user who knows
/// other expression languages would likely have meant something else.
fn unexpected_char(c: char) -> String {
    let hint = match c {
        '=' => " (comparison is '==')",
        '&' => " (logical and is '&&' or 'and')",
        '|' => " (logical or is '||' or 'or'; pipes are not supported in formulas)",
        '"' | '\'' | '`' => " (strings are not supported in formulas)",
        '.' | '[' | ']' => " (member access is not supported: use trigger names directly)",
        _ => "",
    };
    format!("unexpected character '{}'{hint}", c.escape_debug())
}

/// Scans a number the way expr-lang does: `_` separators, `0x`/`0o`/`0b` prefixes, a fraction
/// and an exponent for decimals; a letter right after it is an error (`12ab`).
fn lex_number(chars: &[char], start: usize) -> Result<(Tok, usize), FormulaError> {
    let mut i = start;
    let lower = |i: usize| chars.get(i).map(|c| c.to_ascii_lowercase());
    let mut radix = 10;
    if chars[i] == '0' {
        match lower(i + 1) {
            Some('x') => radix = 16,
            Some('o') => radix = 8,
            Some('b') => radix = 2,
            _ => {}
        }
        if radix != 10 {
            i += 2;
        }
    }
    let digit = |c: char| c == '_' || c.is_digit(radix);
    while chars.get(i).is_some_and(|c| digit(*c)) {
        i += 1;
    }
    // A '.' belongs to the number unless it starts a `..` (expr's range operator).
    if chars.get(i) == Some(&'.') && chars.get(i + 1) != Some(&'.') {
        i += 1;
        while chars.get(i).is_some_and(|c| digit(*c)) {
            i += 1;
        }
    }
    if radix == 10 && lower(i) == Some('e') {
        i += 1;
        if matches!(chars.get(i), Some('+' | '-')) {
            i += 1;
        }
        while chars
            .get(i)
            .is_some_and(|c| c.is_ascii_digit() || *c == '_')
        {
            i += 1;
        }
    }
    // Like expr-lang, drop the separators before parsing: `1__0` is 10.
    let text: String = chars[start..i].iter().filter(|c| **c != '_').collect();
    if chars.get(i).is_some_and(|c| is_ident_char(*c)) {
        let bad: String = chars[start..=i].iter().collect();
        return Err(syntax(i + 1, format!("bad number syntax: \"{bad}\"")));
    }
    let column = start + 1;
    // Base-prefixed literals are ints; decimals with '.' or an exponent are floats; the rest
    // are ints, and an int that does not fit in 64 bits is an error (Go's ParseInt).
    let tok = if radix != 10 {
        let digits = &text[2..];
        if digits.contains('.') {
            return Err(syntax(
                column,
                format!("invalid number \"{text}\": fractions need base 10"),
            ));
        }
        i64::from_str_radix(digits, radix)
            .map(Tok::Int)
            .map_err(|e| syntax(column, format!("invalid number \"{text}\": {e}")))?
    } else if text.contains(['.', 'e', 'E']) {
        text.parse::<f64>()
            .map(Tok::Float)
            .map_err(|_| syntax(column, format!("invalid float literal \"{text}\"")))?
    } else {
        text.parse::<i64>()
            .map(Tok::Int)
            .map_err(|_| syntax(column, format!("integer literal \"{text}\" is too large")))?
    };
    Ok((tok, i))
}
