use std::path::PathBuf;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("lexical index error")]
    Index(#[from] tantivy::TantivyError),
    #[error("opening the lexical index directory")]
    OpenDirectory(#[from] tantivy::directory::error::OpenDirectoryError),
    #[error("i/o error while {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("embedding dimension mismatch: expected {expected}, got {got}")]
    Dimension { expected: usize, got: usize },
    #[error("embedding failed")]
    Embed(#[source] BoxError),
    #[error("vector store `{store}` failed while {op}")]
    VectorStore {
        store: &'static str,
        op: &'static str,
        #[source]
        source: BoxError,
    },
    #[error(
        "the Qdrant collection `{collection}` cannot be used: {reason}; point \
         retrieval.vectors.collection at another collection, or delete this one to have it \
         created again"
    )]
    Collection { collection: String, reason: String },
    #[error("vector file {path} is corrupt: {reason}")]
    CorruptVectors { path: PathBuf, reason: String },
    #[error("index manifest {path} is unreadable")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("blocking task failed")]
    Join(#[from] tokio::task::JoinError),
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
