//! The route table: [`super::router`] registers exactly these routes and `GET
//! /api/openapi.json` describes exactly these, so the document cannot drift from the code.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{delete, get, post, MethodRouter};
use axum::Json;
use serde_json::{json, Value};

use super::{
    admin, analytics, auth, calls, cases, chat, health, metrics, mydata_routes, openai, pages,
    AppState,
};

/// One route.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// `public`, `resident` (any session), `agent`, `admin`, or `api_key`.
    pub access: &'static str,
    /// JSON body fields: (name, JSON type, required).
    pub body: &'static [(&'static str, &'static str, bool)],
    /// What comes back.
    pub returns: &'static str,
    pub handler: MethodRouter<Arc<AppState>>,
}

macro_rules! route {
    ($m:ident, $path:expr, $access:expr, $summary:expr, $body:expr, $returns:expr, $h:expr) => {
        Route {
            method: stringify!($m),
            path: $path,
            summary: $summary,
            access: $access,
            body: $body,
            returns: $returns,
            handler: $m($h),
        }
    };
}

/// Every route of the service.
pub fn routes() -> Vec<Route> {
    vec![
        route!(get, "/", "public", "Resident chat page", &[], "text/html", pages::resident),
        route!(get, "/apply", "public", "MyData pre-filled application page", &[], "text/html", pages::apply),
        route!(get, "/console", "public", "Agent console page (asks for a login)", &[], "text/html", pages::console),
        route!(get, "/admin", "public", "Administrator page (asks for a login)", &[], "text/html", pages::admin),
        route!(get, "/analytics", "public", "Case analytics and decision support page (asks for a login)", &[], "text/html", pages::analytics),
        route!(get, "/login", "public", "Sign-in page", &[], "text/html", pages::login),
        route!(get, "/static/common.js", "public", "Script shared by the pages", &[], "text/javascript", pages::common_js),
        route!(get, "/static/common.css", "public", "Styles shared by the pages", &[], "text/css", pages::common_css),
        route!(get, "/healthz", "public", "Liveness", &[], "text/plain `ok`", health::healthz),
        route!(get, "/readyz", "public", "Readiness: index open with guides, the vector store answering, database, LLM", &[], "{ready, guides, vectors, schema_version, llm, mydata, mydata_platform, voice}; 503 when not ready", health::readyz),
        route!(get, "/metrics", "public", "Prometheus metrics", &[], "text/plain (Prometheus 0.0.4)", metrics::metrics),
        route!(get, "/api/openapi.json", "public", "This document", &[], "OpenAPI 3.1", openapi_json),
        route!(get, "/api/session", "resident", "The session: CSRF token and role (sets the session cookie)", &[], "{csrf, role, username, mydata, mydata_sandbox}", auth::session_info),
        route!(post, "/api/login", "resident", "Staff sign-in (rotates the session)", &[("username", "string", true), ("password", "string", true)], "{role, username, csrf}", auth::login),
        route!(post, "/api/logout", "resident", "Sign out", &[], "204", auth::logout),
        route!(post, "/api/chat", "resident", "Chat turn, streamed as Server-Sent Events: meta, draft, token, final, error", &[("message", "string", true), ("conversation_id", "string", false)], "text/event-stream", chat::chat),
        route!(post, "/api/ask", "resident", "One question, one grounded answer (as `assistant ask --json`)", &[("message", "string", true)], "{answer, citations: [{number, doc_id, chunk_id, title, section, snippet}], handoff, grounded, kind, bureau, doc_id, confidence, timings, llm}", chat::ask),
        route!(get, "/api/guides/{doc_id}", "resident", "A whole guide, for opening a citation", &[], "{doc_id, title, bureau, sections: [{chunk_id, section, text}]}", chat::guide),
        route!(post, "/api/handoff", "resident", "Ask for a person: flags the conversation for agents", &[("conversation_id", "string", true)], "{message}", chat::handoff),
        route!(post, "/api/extract", "resident", "Form fields from a description", &[("schema", "string", false), ("text", "string", true)], "Extraction {schema, fields, problems, follow_ups, bureau, alternatives}", cases::extract),
        route!(get, "/api/forms", "resident", "Application forms and whether MyData pre-fill is offered", &[], "[{name, title, mydata}]", mydata_routes::forms),
        route!(get, "/api/mydata/consent/{form}", "resident", "The consent screen for a form", &[], "{form, title, purpose, retention_days, datasets: [[dataset, [field labels]]]}", mydata_routes::consent),
        route!(post, "/api/mydata/start", "resident", "Start a MyData transfer (after consent on our page)", &[("form", "string", true)], "{redirect}", mydata_routes::start),
        route!(get, "/mydata/callback", "resident", "The platform's callback (code, tx_id, permission_ticket)", &[], "302 to /apply?draft= or /apply?error=", mydata_routes::callback),
        route!(get, "/api/drafts/{id}", "resident", "An application draft of this session", &[], "{id, form, title, status, expires, fields: [{name, label, value, source, provenance, required}]}", mydata_routes::get_draft),
        route!(post, "/api/drafts/{id}/fields", "resident", "Correct or add a value", &[("name", "string", true), ("value", "any", true)], "draft", mydata_routes::set_field),
        route!(post, "/api/drafts/{id}/submit", "resident", "Submit; MyData values are deleted", &[], "draft + submitted", mydata_routes::submit),
        route!(post, "/api/drafts/{id}/abandon", "resident", "Abandon; every value is deleted", &[], "draft", mydata_routes::abandon),
        route!(get, "/api/mydata/log", "resident", "The transfer log of the resident this session verified as", &[], "[{time, kind, counterpart, form, datasets, success, reason}]", mydata_routes::my_log),
        route!(post, "/api/assist", "agent", "Live call assist: suggested answer with sources, the case fields and the after-call note", &[("text", "string", true)], "{answer, note: {lines: [{label, text, span}], text}, case: {category, bureau, fields, alternatives, problems, follow_ups}, alert, benefits, known}", cases::assist),
        route!(post, "/api/cases", "agent", "Create a case from what the caller said (with the agent's after-call note)", &[("text", "string", true), ("note", "string", false)], "Case {id, created, updated, status, category, bureau, fields, summary, created_by, reports}", cases::create_case),
        route!(get, "/api/calls/stream", "agent", "Live call audio over a WebSocket (binary PCM16 or G.711 frames in; partial, final, analysis, notice, end events out). Query: format=pcm16|mulaw|alaw, rate=Hz. Agents or a PBX with an API key", &[], "101 WebSocket", calls::stream),
        route!(get, "/api/calls", "agent", "The latest transcribed calls", &[], "[{id, started, updated, status, source, transcript}]", calls::list),
        route!(get, "/api/cases", "agent", "The latest cases", &[], "[Case]", cases::list_cases),
        route!(post, "/api/cases/{id}/confirm", "agent", "Confirm a case with the agent's corrections", &[("category", "string", false), ("bureau", "string", false), ("fields", "object", false)], "Case", cases::confirm_case),
        route!(post, "/api/cases/{id}/dispatch", "agent", "Dispatch a confirmed case to a bureau", &[("bureau", "string", false)], "Case", cases::dispatch_case),
        route!(post, "/api/cases/{id}/note", "agent", "Save the after-call note as the agent edited it (up to 2,000 characters; empty removes it)", &[("note", "string", true)], "Case", cases::save_note),
        route!(post, "/api/cases/{id}/reports", "agent", "Link a repeat report to this case instead of creating a duplicate", &[], "Case (reports counted)", cases::link_report),
        route!(get, "/api/handoffs", "agent", "Conversations waiting for a person", &[], "[{conversation_id, time, last_question}]", chat::handoffs),
        route!(get, "/api/conversations/{id}", "agent", "A conversation's exchanges", &[], "{id, exchanges: [{question, answer, doc_id}]}", chat::conversation_view),
        route!(get, "/api/analytics/summary", "agent", "The case history: rows, first and last day, categories, districts, bureaus", &[], "{rows, first_day, last_day, categories: [{name, bureau}], districts, bureaus, admin}", analytics::summary),
        route!(get, "/api/analytics/counts", "agent", "Case counts. Query: by=day|week|month|hour|weekday|weekday_hour|district|village|category, from, to (YYYY-MM-DD), category, district, format=csv. Counts under 5 suppressed outside the administrators' view", &[], "[{key, count, suppressed}]", analytics::counts),
        route!(get, "/api/analytics/spikes", "agent", "Categories × districts running far above their seasonal baseline on a day. Query: date (default the last day with records), format=csv", &[], "{date, spikes: [{category, district, bureau, count, expected, ratio, p_value}]}", analytics::spikes),
        route!(get, "/api/analytics/repeats", "agent", "Places reported again and again for the same category (house numbers only for administrators). Query: min, limit, from, to, category, district, format=csv", &[], "[{address, district, village, category, count, first, last}]", analytics::repeats),
        route!(get, "/api/analytics/digest", "agent", "A bureau's week against the week before, with its spikes and repeat locations. Query: bureau, week (a Monday), format=csv", &[], "{bureau, week_start, week_end, total, previous, change, categories, spikes, repeats}", analytics::digest),
        route!(post, "/api/analytics/import", "admin", "Import a 1999 dispatch CSV or .csv.gz (the request body; up to 256 MB) in the background", &[], "202 {job}", analytics::import),
        route!(get, "/api/admin/gaps", "admin", "Knowledge gaps: questions handed off or answered with low confidence (personal details removed), grouped by topic. Query: days (default 30)", &[], "{days, questions, groups: [{topic, doc_id, bureau, count, handoffs, low_confidence, examples}]}", analytics::gaps),
        route!(get, "/api/admin/guides", "admin", "Indexed guides", &[], "[{doc_id, title, bureau}]", admin::guides),
        route!(post, "/api/admin/guides", "admin", "Upload a guide (checked, stored in the database for every instance, re-indexed)", &[("filename", "string", true), ("content", "string", true)], "202 {job}", admin::upload),
        route!(delete, "/api/admin/guides/{name}", "admin", "Remove an uploaded guide (from every instance) and re-index", &[], "202 {job}", admin::delete_upload),
        route!(post, "/api/admin/reindex", "admin", "Re-index the corpus", &[], "202 {job}", admin::reindex),
        route!(get, "/api/admin/jobs/{id}", "admin", "A background job's progress", &[], "{state, done, total, message}", admin::job),
        route!(post, "/api/admin/users", "admin", "Create an agent or administrator account", &[("username", "string", true), ("password", "string", true), ("role", "string", true)], "201 {username, role}", admin::add_user),
        route!(get, "/api/admin/audit", "admin", "The audit log", &[], "[{time, actor, action, target}]", admin::audit),
        route!(get, "/api/admin/login-locks", "admin", "Active login locks (accounts and client addresses)", &[], "[{key, until, created, failures}]", admin::login_locks),
        route!(post, "/api/admin/login-locks/lift", "admin", "Lift a login lock", &[("key", "string", true)], "{lifted}", admin::lift_login_lock),
        route!(get, "/api/admin/transfers", "admin", "The MyData transfer log", &[], "[TransferRecord]", admin::transfers),
        route!(get, "/api/admin/eval", "admin", "Eval reports", &[], "{reports: [{name, content}]}", admin::eval_reports),
        route!(get, "/v1/models", "api_key", "OpenAI-compatible model list", &[], "{object: list, data}", openai::models),
        route!(post, "/v1/chat/completions", "api_key", "OpenAI-compatible chat completion over the grounded pipeline (stream or not)", &[("messages", "array", true), ("model", "string", false), ("stream", "boolean", false)], "chat.completion / chat.completion.chunk SSE", openai::completions),
    ]
}

/// The OpenAPI 3.1 document for [`routes`].
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for r in routes() {
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": r.summary,
            "x-access": r.access,
            "parameters": params,
            "responses": {
                "200": {"description": r.returns},
                "4XX": {"description": "{error, code}", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "503": {"description": "Busy: retry after the Retry-After header's seconds"},
            },
        });
        if !r.body.is_empty() {
            let mut props = serde_json::Map::new();
            let mut required = Vec::new();
            for (name, ty, req) in r.body {
                let schema = if *ty == "any" {
                    json!({})
                } else {
                    json!({"type": ty})
                };
                props.insert(name.to_string(), schema);
                if *req {
                    required.push(*name);
                }
            }
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {
                    "type": "object", "properties": props, "required": required
                }}},
            });
        }
        if r.access != "public" {
            op["security"] = match r.access {
                "api_key" => json!([{"bearer": []}, {}]),
                _ => json!([{"session": []}]),
            };
        }
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "1999 市民熱線智慧助理 API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "State-changing requests from a browser session send its CSRF token in X-CSRF-Token.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": {"type": "object", "properties": {
                "error": {"type": "string"}, "code": {"type": "string"}}}},
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": super::auth::COOKIE},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    })
}

async fn openapi_json(State(_): State<Arc<AppState>>) -> Json<Value> {
    Json(document())
}
