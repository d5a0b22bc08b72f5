use std::path::PathBuf;

/// Errors from reading knowledge sources. Per-file problems inside a corpus are reported as
/// [`crate::load::LoadProblem`]s instead, so one bad file never loses the rest.
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
    #[error("{path} is not a recognised corpus (expected a guides directory, a guide .md file, the Kaohsiung FAQ JSON or the Keelung pages JSON)")]
    UnknownFormat { path: PathBuf },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
