//! Form schemas: the fields of an application or a 1999 case, as data files (`corpus/forms/*.toml`,
//! format in `corpus/forms/README.md`). A schema says, per field, its zh-TW label, type, whether it
//! is required, how a resident names it (cue words), the follow-up question when it is missing,
//! and which MyData dataset field can pre-fill it.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The most datasets one service may request from MyData (integration rules, seed 003).
pub const MAX_MYDATA_DATASETS: usize = 5;

/// What kind of value a field holds; decides the extractor and the validator used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// A person's name (2–4 characters, led by a surname).
    Name,
    /// 身分證統一編號 or resident-certificate number, checksum-validated.
    IdNumber,
    /// A Taiwanese phone number, digits only.
    Phone,
    /// A date, ISO `YYYY-MM-DD`.
    Date,
    /// A street address, wording kept, numerals normalised.
    Address,
    /// One of the city's districts (`大安區`).
    District,
    /// A road or street with its section (`民生東路四段`).
    Road,
    /// One of `options`.
    Enum,
    /// A whole number.
    Integer,
    /// An amount of money in NT$.
    Amount,
    /// Yes or no.
    Bool,
    /// An e-mail address.
    Email,
    /// Streetlight pole numbers (a list).
    PoleNumbers,
    /// The 1999 dispatch category (from the case taxonomy).
    Category,
    /// Free text.
    Text,
}

impl FieldKind {
    /// Whether the value is a list.
    pub fn is_list(self) -> bool {
        matches!(self, FieldKind::PoleNumbers)
    }
}

/// Which option of an enum wins when the text names several.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pick {
    /// The one mentioned first.
    #[default]
    First,
    /// The one listed first in `options` (most serious first).
    Priority,
}

/// Where MyData can supply a field's value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MyDataSource {
    /// Dataset name as in the platform's catalogue (`個人戶籍資料`).
    pub dataset: String,
    /// Field key inside that dataset's JSON.
    pub field: String,
}

/// A person a form talks about (applicant, elder, child, caller) and how text refers to them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub name: String,
    /// Words that switch the text to this person (`我媽`, `小孩`, `本人`).
    #[serde(default)]
    pub cues: Vec<String>,
}

/// One field of a form.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Flat dotted name (`elder.birth_date`); the part before the dot is the role.
    pub name: String,
    /// zh-TW label shown to residents and agents.
    pub label: String,
    #[serde(rename = "type")]
    pub kind: FieldKind,
    #[serde(default)]
    pub required: bool,
    /// The follow-up question when the field is missing.
    #[serde(default)]
    pub question: Option<String>,
    /// Words right before a value that mark it as this field (`電話`, `生日`).
    #[serde(default)]
    pub cues: Vec<String>,
    /// Allowed values (enum fields).
    #[serde(default)]
    pub options: Vec<String>,
    /// Words residents use for each option (for integers: the number as key, `"2" = ["老二"]`).
    #[serde(default)]
    pub synonyms: BTreeMap<String, Vec<String>>,
    /// Which option wins when the text names several.
    #[serde(default)]
    pub pick: Pick,
    /// Bounds for integers and amounts.
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    /// Value used when the text says nothing (e.g. `hazard = false`); never for personal data.
    #[serde(default)]
    pub default: Option<toml::Value>,
    /// Whether the value falls to this field when no role is being talked about.
    #[serde(default)]
    pub primary: bool,
    #[serde(default)]
    pub mydata: Option<MyDataSource>,
}

impl FieldSpec {
    /// The role part of the name (`elder` for `elder.birth_date`), if any.
    pub fn role(&self) -> Option<&str> {
        self.name.split_once('.').map(|(r, _)| r)
    }
}

/// A form: an application or a case report.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormSchema {
    /// Identifier (`senior_card`).
    pub name: String,
    /// zh-TW title.
    pub title: String,
    /// Responsible bureau.
    #[serde(default)]
    pub bureau: Option<String>,
    /// Why the data is collected (shown on the consent screen).
    #[serde(default)]
    pub purpose: Option<String>,
    /// Days a draft's MyData values are kept before purging.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// MyData datasets the service requests (≤ 5).
    #[serde(default)]
    pub mydata: Vec<String>,
    /// Guide documents (ids in `corpus/guides`) describing the service.
    #[serde(default)]
    pub guides: Vec<String>,
    #[serde(default)]
    pub roles: Vec<Role>,
    pub fields: Vec<FieldSpec>,
}

impl FormSchema {
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Parses and checks one schema.
    pub fn from_toml(text: &str) -> Result<FormSchema, String> {
        let schema: FormSchema = toml::from_str(text).map_err(|e| e.to_string())?;
        schema.check()?;
        Ok(schema)
    }

    fn check(&self) -> Result<(), String> {
        if self.fields.is_empty() {
            return Err(format!("form {} has no fields", self.name));
        }
        if self.mydata.len() > MAX_MYDATA_DATASETS {
            return Err(format!(
                "form {} requests {} MyData datasets; the platform allows at most {MAX_MYDATA_DATASETS}",
                self.name,
                self.mydata.len()
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.fields {
            if !seen.insert(&f.name) {
                return Err(format!(
                    "form {}: field {} appears twice",
                    self.name, f.name
                ));
            }
            if f.kind == FieldKind::Enum && f.options.is_empty() {
                return Err(format!(
                    "form {}: enum field {} has no options",
                    self.name, f.name
                ));
            }
            if let Some(o) = f
                .synonyms
                .keys()
                .find(|o| f.kind == FieldKind::Enum && !f.options.contains(o))
            {
                return Err(format!(
                    "form {}: field {} has synonyms for {o}, which is not an option",
                    self.name, f.name
                ));
            }
            if let Some(src) = &f.mydata {
                if !self.mydata.contains(&src.dataset) {
                    return Err(format!(
                        "form {}: field {} is pre-filled from {}, which the form does not request",
                        self.name, f.name, src.dataset
                    ));
                }
            }
            if let Some(role) = f.role() {
                if !self.roles.is_empty() && !self.roles.iter().any(|r| r.name == role) {
                    return Err(format!(
                        "form {}: field {} names role {role}, which is not declared",
                        self.name, f.name
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Why the form schemas could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    #[error("cannot read form schemas from {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("form schema {path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("form {name} is defined twice ({path})")]
    Duplicate { name: String, path: PathBuf },
}

/// All schemas of a directory (`*.toml`), sorted by name.
pub fn load_forms(dir: &Path) -> Result<Vec<FormSchema>, FormError> {
    let io = |source| FormError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    let mut forms: Vec<FormSchema> = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|source| FormError::Io {
            path: path.clone(),
            source,
        })?;
        let form = FormSchema::from_toml(&text).map_err(|message| FormError::Invalid {
            path: path.clone(),
            message,
        })?;
        if forms.iter().any(|f| f.name == form.name) {
            return Err(FormError::Duplicate {
                name: form.name,
                path,
            });
        }
        forms.push(form);
    }
    forms.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(forms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"
name = "mini"
title = "測試"
mydata = ["個人戶籍資料"]
[[roles]]
name = "applicant"
cues = ["我"]
[[fields]]
name = "applicant.name"
label = "姓名"
type = "name"
required = true
mydata = { dataset = "個人戶籍資料", field = "name" }
[[fields]]
name = "kind"
label = "類別"
type = "enum"
options = ["甲", "乙"]
synonyms = { "甲" = ["第一種"] }
"#;

    #[test]
    fn a_schema_parses_with_roles_enums_and_mydata() {
        let f = FormSchema::from_toml(MINI).unwrap();
        assert_eq!(f.fields.len(), 2);
        assert_eq!(f.field("applicant.name").unwrap().role(), Some("applicant"));
        assert_eq!(f.field("kind").unwrap().synonyms["甲"], vec!["第一種"]);
    }

    #[test]
    fn inconsistent_schemas_are_refused_with_the_reason() {
        let bad = MINI.replace("options = [\"甲\", \"乙\"]", "options = []");
        assert!(FormSchema::from_toml(&bad)
            .unwrap_err()
            .contains("no options"));
        let bad = MINI.replace("mydata = [\"個人戶籍資料\"]", "mydata = []");
        assert!(FormSchema::from_toml(&bad)
            .unwrap_err()
            .contains("does not request"));
        let bad = MINI.replace(
            "mydata = [\"個人戶籍資料\"]",
            "mydata = [\"a\",\"b\",\"c\",\"d\",\"e\",\"個人戶籍資料\"]",
        );
        assert!(FormSchema::from_toml(&bad)
            .unwrap_err()
            .contains("at most 5"));
        let bad = MINI.replace("\"甲\" = [", "\"丙\" = [");
        assert!(FormSchema::from_toml(&bad)
            .unwrap_err()
            .contains("not an option"));
    }

    #[test]
    fn the_bundled_forms_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/forms");
        let forms = load_forms(&dir).unwrap();
        for name in [
            "senior_card",
            "childcare_allowance",
            "case_report",
            "streetlight_report",
        ] {
            assert!(forms.iter().any(|f| f.name == name), "{name} missing");
        }
    }
}
