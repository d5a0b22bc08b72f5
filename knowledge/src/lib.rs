//! Domain knowledge: service guides as typed [`Document`]s, their loaders (the project's own
//! Markdown guides, the Kaohsiung FAQ JSON, the Keelung pages JSON), section-aware chunking and
//! content hashing. Depends on no other crate of the workspace.

pub mod benefits;
pub mod chunk;
pub mod document;
pub mod error;
pub mod forms;
pub mod html;
pub mod load;
pub mod routing;
pub mod safety;
pub mod taxonomy;
pub mod text;
pub mod validate;

pub use chunk::{chunk_document, Chunk, ChunkConfig};
pub use document::{Document, Scope, Section, SectionKind, SourceFormat};
pub use error::{Error, Result};
pub use forms::{load_forms, FieldKind, FieldSpec, FormSchema, Pick};
pub use load::{load_path, LoadOptions, LoadProblem, Loaded, LoadedDocument};
pub use taxonomy::{Category, Taxonomy};
