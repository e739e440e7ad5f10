//! Options of the store's writes, mirroring the query parameters and bodies of the HTTP API
//! (`dryRun`, `fieldManager`, `fieldValidation`, `/status`, delete propagation and
//! preconditions).

/// Which part of an object an update writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Subresource {
    /// The main resource: `.status` is kept from the stored object if the resource has a status
    /// subresource.
    #[default]
    Main,
    /// `/status`: only `.status` is taken from the request.
    Status,
}

/// Options of create and update.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Validate and compute the result, but store nothing (`?dryRun=All`).
    pub dry_run: bool,
    /// `?fieldManager=`; recorded in `managedFields` by callers that track ownership.
    pub field_manager: Option<String>,
    /// Main resource or `/status`.
    pub subresource: Subresource,
    /// `?fieldValidation=Strict`: unknown fields of custom resources fail with 400.
    pub strict: bool,
}

impl WriteOptions {
    /// Options for a `/status` write.
    pub fn status() -> Self {
        Self {
            subresource: Subresource::Status,
            ..Self::default()
        }
    }
}

/// `propagationPolicy` of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents lose their owner reference and stay.
    Orphan,
    /// The owner goes now; the garbage collector removes dependents afterwards.
    Background,
    /// Dependents go first; the owner waits with the `foregroundDeletion` finalizer.
    Foreground,
}

/// Options of delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// Compute the result, change nothing.
    pub dry_run: bool,
    /// Cascading policy; `None` = the resource default (background).
    pub propagation: Option<Propagation>,
    /// `preconditions.resourceVersion`.
    pub precondition_rv: Option<String>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
}
