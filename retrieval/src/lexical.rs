//! The BM25 index on disk (tantivy), one tantivy document per chunk.

use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::error::Result;
use crate::tokenizer::{terms, JiebaTokenizer};
use crate::{ChunkHit, SearchFilter};

const TOKENIZER_NAME: &str = "jieba_zh";

pub struct LexicalIndex {
    index: Index,
    reader: IndexReader,
    writer: Option<IndexWriter>,
    chunk_id: Field,
    doc_id: Field,
    bureau: Field,
    category: Field,
    text: Field,
}

fn schema() -> Schema {
    let mut b = Schema::builder();
    b.add_text_field("chunk_id", STRING | STORED);
    b.add_text_field("doc_id", STRING | STORED);
    b.add_text_field("bureau", STRING);
    b.add_text_field("category", STRING);
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(TOKENIZER_NAME)
        .set_index_option(IndexRecordOption::WithFreqsAndPositions);
    b.add_text_field(
        "text",
        TextOptions::default().set_indexing_options(indexing),
    );
    b.build()
}

impl LexicalIndex {
    /// Opens the index in `dir`, creating it when absent.
    pub fn open_or_create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io("creating", dir, e))?;
        let mmap = tantivy::directory::MmapDirectory::open(dir)?;
        let index = Index::open_or_create(mmap, schema())?;
        Self::from_index(index)
    }

    /// An index held in memory (tests, throwaway evaluations).
    pub fn in_memory() -> Result<Self> {
        Self::from_index(Index::create_in_ram(schema()))
    }

    fn from_index(index: Index) -> Result<Self> {
        index.tokenizers().register(TOKENIZER_NAME, JiebaTokenizer);
        let s = index.schema();
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(LexicalIndex {
            chunk_id: s.get_field("chunk_id")?,
            doc_id: s.get_field("doc_id")?,
            bureau: s.get_field("bureau")?,
            category: s.get_field("category")?,
            text: s.get_field("text")?,
            index,
            reader,
            writer: None,
        })
    }

    fn writer(&mut self) -> Result<&mut IndexWriter> {
        if self.writer.is_none() {
            self.writer = Some(self.index.writer_with_num_threads(1, 50_000_000)?);
        }
        Ok(self.writer.as_mut().expect("writer was just created"))
    }

    pub fn add(&mut self, chunk: &knowledge::Chunk) -> Result<()> {
        let (cid, did, bureau, category, text) = (
            self.chunk_id,
            self.doc_id,
            self.bureau,
            self.category,
            self.text,
        );
        let d = doc!(
            cid => chunk.id.clone(),
            did => chunk.doc_id.clone(),
            bureau => chunk.bureau.clone().unwrap_or_default(),
            category => chunk.category.clone().unwrap_or_default(),
            text => chunk.search_text(),
        );
        self.writer()?.add_document(d)?;
        Ok(())
    }

    pub fn delete_doc(&mut self, doc_id: &str) -> Result<()> {
        let term = Term::from_field_text(self.doc_id, doc_id);
        self.writer()?.delete_term(term);
        Ok(())
    }

    pub fn delete_all(&mut self) -> Result<()> {
        self.writer()?.delete_all_documents()?;
        Ok(())
    }

    pub fn commit(&mut self) -> Result<()> {
        if let Some(w) = self.writer.as_mut() {
            w.commit()?;
            self.reader.reload()?;
        }
        Ok(())
    }

    pub fn num_chunks(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// BM25 over the query's terms (any term may match), best first.
    pub fn search(&self, query: &str, k: usize, filter: &SearchFilter) -> Result<Vec<ChunkHit>> {
        let q_terms = terms(query);
        if q_terms.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let mut seen = std::collections::HashSet::new();
        let should: Vec<(Occur, Box<dyn Query>)> = q_terms
            .into_iter()
            .filter(|t| seen.insert(t.clone()))
            .map(|t| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(self.text, &t),
                    IndexRecordOption::WithFreqs,
                ));
                (Occur::Should, q)
            })
            .collect();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> =
            vec![(Occur::Must, Box::new(BooleanQuery::new(should)))];
        if let Some(b) = &filter.bureau {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.bureau, b),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        if let Some(c) = &filter.category {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.category, c),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(k).order_by_score())?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let d: TantivyDocument = searcher.doc(addr)?;
            let get = |f: Field| {
                d.get_first(f)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            hits.push(ChunkHit {
                chunk_id: get(self.chunk_id),
                doc_id: get(self.doc_id),
                score,
            });
        }
        Ok(hits)
    }
}
