//! The application wired from [`Settings`] in one place: the server, every CLI subcommand and
//! `eval` build their parts here (the embedder, the index, the answerer, the extractor, the
//! database, the MyData platform, speech), so a setting means the same everywhere.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use models::llm::ChatModel;
use retrieval::{Embedder, Retriever};

use crate::answer::safety::Triage;
use crate::answer::walkthrough::{self, Walkthrough};
use crate::answer::Answerer;
use crate::config::{MyDataPlatform, Settings};
use crate::http::{self, AppState, Parts};
use crate::intake::Extractor;
use crate::mydata::client::MyDataClient;
use crate::store::Db;

/// The configured application.
pub struct App {
    pub settings: Settings,
    embedder: OnceLock<Arc<dyn Embedder>>,
    triage: OnceLock<Arc<Triage>>,
}

/// Where the MyData pre-fill talks to, once started.
pub struct MyDataConnection {
    pub client: MyDataClient,
    /// The bundled sandbox runs in this process (the pages say so).
    pub sandbox: bool,
}

impl App {
    pub fn new(settings: Settings) -> App {
        App {
            settings,
            embedder: OnceLock::new(),
            triage: OnceLock::new(),
        }
    }

    /// Loads the layers from `dir` (normally `config/`) and the environment.
    pub fn from_config_dir(dir: &Path) -> anyhow::Result<App> {
        Ok(App::new(Settings::load(dir)?))
    }

    pub fn cache_root(&self) -> PathBuf {
        self.settings.cache_root()
    }

    /// The sentence embedder (loaded once; a missing model names `assistant setup`).
    pub fn embedder(&self) -> anyhow::Result<Arc<dyn Embedder>> {
        if let Some(e) = self.embedder.get() {
            return Ok(e.clone());
        }
        let e = self.settings.embedder.load(&self.cache_root())?;
        Ok(self.embedder.get_or_init(|| e).clone())
    }

    /// The index at `index_dir` (in memory when `None`).
    pub async fn retriever(&self, index_dir: Option<&Path>) -> anyhow::Result<Retriever> {
        crate::kb::open(self.embedder()?, &self.settings.retrieval, index_dir).await
    }

    /// The chat model, unless `[llm] backend = "off"`.
    pub fn llm(&self) -> anyhow::Result<Option<Arc<dyn ChatModel>>> {
        self.settings.llm.load(&self.cache_root())
    }

    /// The answer pipeline over `retriever` (safety triage first), with the configured LLM
    /// unless `no_llm`.
    pub fn answerer(&self, retriever: Retriever, no_llm: bool) -> anyhow::Result<Answerer> {
        let llm = if no_llm { None } else { self.llm()? };
        Ok(
            Answerer::new(Arc::new(retriever), llm, self.settings.answer.clone())
                .with_triage(self.triage()?)
                .with_entities(self.entities()?)
                .with_names(self.guide_names()?),
        )
    }

    /// Every bundled guide's title and aliases with its id.
    pub fn guide_names(&self) -> anyhow::Result<Vec<(String, String)>> {
        let loaded = knowledge::load_path(
            &self.settings.paths.corpus,
            &knowledge::LoadOptions::default(),
        )?;
        Ok(crate::answer::guide_names(
            loaded.documents.iter().map(|d| &d.document),
        ))
    }

    /// The benefit rules in `paths.benefits`, each checked to have its guide (a benefit's id is
    /// its guide's file name, so suggestions cite the guide).
    pub fn benefit_rules(&self) -> anyhow::Result<Arc<knowledge::benefits::Rulebook>> {
        let book = knowledge::benefits::Rulebook::load(&self.settings.paths.benefits)?;
        let loaded = knowledge::load_path(
            &self.settings.paths.corpus,
            &knowledge::LoadOptions::default(),
        )?;
        let ids: Vec<String> = loaded
            .documents
            .iter()
            .map(|d| d.document.id.clone())
            .collect();
        book.check_guides(&ids)
            .map_err(|e| anyhow::anyhow!("{e} (in {})", self.settings.paths.benefits.display()))?;
        Ok(Arc::new(book))
    }

    /// The safety triage: the rules in `paths.safety` and the similarity vote with the
    /// embedder (exemplar vectors cached beside the models).
    pub fn triage(&self) -> anyhow::Result<Arc<Triage>> {
        if let Some(t) = self.triage.get() {
            return Ok(t.clone());
        }
        let t = Triage::load(&self.settings.paths.safety)?.with_embedder(
            self.embedder()?,
            self.settings.answer.safety_similarity,
            Some(&self.cache_root().join("safety")),
        )?;
        Ok(self.triage.get_or_init(|| Arc::new(t)).clone())
    }

    /// The names of the services and household statuses in the bundled guides (titles and
    /// aliases), which the claim check keeps apart.
    pub fn entities(&self) -> anyhow::Result<Vec<String>> {
        let loaded = knowledge::load_path(
            &self.settings.paths.corpus,
            &knowledge::LoadOptions::default(),
        )?;
        Ok(crate::answer::entities(
            loaded.documents.iter().map(|d| &d.document),
        ))
    }

    /// Form schemas, the case taxonomy and the category classifier (with e5 when `dense`).
    pub fn extractor(&self, dense: bool) -> anyhow::Result<Extractor> {
        let p = &self.settings.paths;
        let ex = Extractor::open(&p.forms, &p.cases)?;
        if dense {
            ex.with_embedder(self.embedder()?)
        } else {
            Ok(ex)
        }
    }

    /// The bureau router over the bundled guides and the taxonomy, with the routing lexicon
    /// (`paths.routing/bureaus.toml`; routing goes on without it when the file is absent) and e5
    /// nearest neighbours when `dense` (the examples' vectors cached under the model cache).
    pub fn router(&self, dense: bool) -> anyhow::Result<crate::intake::route::Router> {
        use crate::intake::route::{examples_from_knowledge, Router};
        let p = &self.settings.paths;
        let loaded = knowledge::load_path(&p.corpus, &knowledge::LoadOptions::default())?;
        let docs: Vec<knowledge::Document> =
            loaded.documents.into_iter().map(|d| d.document).collect();
        let taxonomy = knowledge::Taxonomy::load(&p.cases)?;
        let examples = examples_from_knowledge(&docs, &taxonomy);
        let router = Router::train_cached(
            &examples,
            &[],
            if dense { Some(self.embedder()?) } else { None },
            Default::default(),
            Some(&self.cache_root().join("routing")),
        )?;
        let lexicon = p.routing.join("bureaus.toml");
        if !lexicon.exists() {
            tracing::warn!(path = %lexicon.display(), "no routing lexicon: bureaus are routed from the guides alone");
            return Ok(router);
        }
        Ok(router.with_lexicon(&knowledge::routing::BureauLexicon::load(&lexicon)?))
    }

    pub fn walkthroughs(&self) -> anyhow::Result<Vec<Walkthrough>> {
        Ok(walkthrough::load_dir(&self.settings.paths.walkthroughs)?)
    }

    /// The database (`server.database_url`, else the SQLite file).
    pub fn db(&self) -> anyhow::Result<Db> {
        let s = &self.settings.server;
        Ok(Db::open_configured(s.database_url.as_deref(), &s.db_path)?)
    }

    /// Speech recognition, or `None` when voice is off or its model is unavailable (logged
    /// with the fix; the rest of the service stays up).
    pub fn voice(&self) -> Option<Arc<voice::Transcriber>> {
        if !self.settings.voice.enabled {
            return None;
        }
        match tokio::task::block_in_place(|| self.settings.voice.load(&self.cache_root())) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "speech recognition is off");
                None
            }
        }
    }

    /// The MyData platform: the bundled sandbox started in this process (the default), the
    /// real platform at `mydata.base_url`, or none. A platform that cannot be reached leaves
    /// pre-fill off with a warning; the rest of the service stays up.
    pub async fn mydata(&self, callback_base: &str) -> anyhow::Result<Option<MyDataConnection>> {
        let m = &self.settings.mydata;
        let (base_url, secret, sandbox) = match m.platform {
            MyDataPlatform::Off => return Ok(None),
            MyDataPlatform::Platform => {
                if m.base_url.is_empty() {
                    anyhow::bail!(
                        "mydata.platform = \"platform\" needs mydata.base_url (the platform's \
                         address) and ASSISTANT__MYDATA__CLIENT_SECRET"
                    );
                }
                (m.base_url.clone(), m.client_secret.clone(), false)
            }
            MyDataPlatform::Sandbox => {
                let secret = hex::encode(rand::random::<[u8; 24]>());
                let url = self.start_sandbox(&secret, callback_base).await?;
                (url, secret, true)
            }
        };
        let mut client = MyDataClient::new(&base_url, &m.client_id, &secret);
        client.max_wait = std::time::Duration::from_secs(m.max_wait_s);
        match tokio::task::block_in_place(|| client.load_provider_keys()) {
            Ok(()) => Ok(Some(MyDataConnection { client, sandbox })),
            Err(e) => {
                tracing::warn!(error = ?e, "MyData provider keys unavailable; pre-fill is off");
                Ok(None)
            }
        }
    }

    /// Starts the bundled MyData sandbox on a loopback port, with this service registered as
    /// its client; returns its address.
    async fn start_sandbox(&self, secret: &str, callback_base: &str) -> anyhow::Result<String> {
        let dir = &self.settings.paths.mydata;
        let mut cfg = mydata_sandbox::Config::from_files(
            &dir.join("datasets.toml"),
            &dir.join("synthetic_residents.toml"),
        )
        .with_context(|| format!("loading the MyData sandbox from {}", dir.display()))?;
        cfg.delay_scale = self.settings.mydata.sandbox_delay_scale;
        cfg.clients.push(mydata_sandbox::Client {
            client_id: self.settings.mydata.client_id.clone(),
            client_secret: secret.to_string(),
            name: "1999 市民服務助理".into(),
            purpose: "預先填寫您申請的表單，減少您準備紙本證明".into(),
            return_url_prefix: format!("{}/", callback_base.trim_end_matches('/')),
            allowed_ips: vec!["127.0.0.1".into(), "::1".into()],
        });
        let listener = tokio::net::TcpListener::bind(&self.settings.mydata.sandbox_addr)
            .await
            .with_context(|| {
                format!(
                    "binding the MyData sandbox on {} (mydata.sandbox_addr)",
                    self.settings.mydata.sandbox_addr
                )
            })?;
        let addr = listener.local_addr()?;
        let sandbox = mydata_sandbox::Sandbox::new(cfg);
        tokio::spawn(async move {
            if let Err(e) = mydata_sandbox::serve_on(sandbox, listener).await {
                tracing::error!(error = %format!("{e:#}"), "the MyData sandbox stopped");
            }
        });
        tracing::info!(%addr, "MyData sandbox (synthetic residents) started");
        Ok(format!("http://{addr}"))
    }

    /// Serves the pages and the API on `addr` until stopped (`assistant start`).
    /// Builds the server state (ingest, models, database, MyData), binds `addr`, calls `ready`
    /// with the bound address (the moment a browser can connect) and serves until stopped.
    pub async fn serve(
        &self,
        index_dir: &Path,
        addr: std::net::SocketAddr,
        ready: impl FnOnce(std::net::SocketAddr),
    ) -> anyhow::Result<()> {
        let state = self.server_state(index_dir).await?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr} (is another server running there?)"))?;
        ready(listener.local_addr()?);
        http::serve_on(state, listener).await
    }

    /// Creates a staff account (`assistant user`), `admin` or `agent`, with an audit row.
    pub fn create_user(&self, username: &str, password: &str, role: &str) -> anyhow::Result<()> {
        let role = match role {
            "agent" => http::Role::Agent,
            "admin" => http::Role::Admin,
            other => anyhow::bail!("unknown role {other} (agent or admin)"),
        };
        let db = self.db()?;
        http::auth::create_user(&db, username, password, role)?;
        db.audit(
            "cli",
            "user.create",
            &format!("{}:{username}", role.as_str()),
        )?;
        Ok(())
    }

    /// Everything the server needs: the index over the bundled guides and the uploads (only
    /// what changed is re-ingested), the models, the database, MyData and speech.
    pub async fn server_state(&self, index_dir: &Path) -> anyhow::Result<Arc<AppState>> {
        let settings = &self.settings;
        let s = &settings.server;
        let mut retriever = self.retriever(Some(index_dir)).await?;
        let db = self.db()?;
        // Uploaded guides live in the database; this instance's folder follows it.
        let synced = crate::kb::sync_uploads(&db, &s.uploads_dir)?;
        if synced.imported > 0 {
            tracing::info!(
                files = synced.imported,
                "uploaded guides from before this version stored in the database"
            );
        }
        let paths = vec![settings.paths.corpus.clone(), s.uploads_dir.clone()];
        let out = crate::kb::ingest(
            &mut retriever,
            &paths,
            &knowledge::LoadOptions::default(),
            &|_, _| {},
        )
        .await?;
        for p in &out.problems {
            tracing::warn!(path = %p.path.display(), problem = %p.message, "guide skipped");
        }
        tracing::info!(
            files = out.files,
            added = out.report.added,
            "knowledge base ready"
        );
        let llm = if s.chat_llm { self.llm()? } else { None };
        let secret = http::load_or_create_secret(&s.key_path)?;
        let callback_base = s
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", s.addr));
        let mydata = self.mydata(&callback_base).await?;
        if let Some(pw) = http::auth::bootstrap_admin(&db)? {
            // Printed once, to the terminal of whoever started the first run; never logged.
            println!(
                "First run: created the administrator account «admin» with password «{pw}». \
                 Sign in at /login and create personal accounts."
            );
        }
        Ok(AppState::new(Parts {
            triage: Some(self.triage()?),
            entities: self.entities()?,
            names: self.guide_names()?,
            benefits: self.benefit_rules()?,
            settings: s.clone(),
            answer_config: settings.answer.clone(),
            retriever,
            corpus_paths: paths,
            llm,
            walkthroughs: self.walkthroughs()?,
            extractor: self.extractor(true)?,
            router: Some(Arc::new(self.router(true)?)),
            db,
            secret,
            mydata_sandbox: mydata.as_ref().is_some_and(|m| m.sandbox),
            mydata: mydata.map(|m| m.client),
            voice: self.voice(),
            voice_settings: settings.voice.clone(),
        }))
    }
}
