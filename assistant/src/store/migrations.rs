//! The schema, as numbered migrations applied at open (SQLite and PostgreSQL alike).

/// The migrations, in order. Never edit one that has shipped: add another.
pub const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "CREATE TABLE users (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        created BIGINT NOT NULL
    );
    CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        csrf TEXT NOT NULL,
        role TEXT NOT NULL,
        username TEXT,
        subject TEXT,
        created BIGINT NOT NULL,
        last_seen BIGINT NOT NULL
    );
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        session TEXT NOT NULL,
        state TEXT NOT NULL,
        handoff BIGINT NOT NULL DEFAULT 0,
        created BIGINT NOT NULL,
        updated BIGINT NOT NULL
    );
    CREATE INDEX conversations_session ON conversations (session);
    CREATE TABLE cases (
        id TEXT PRIMARY KEY,
        created BIGINT NOT NULL,
        updated BIGINT NOT NULL,
        status TEXT NOT NULL,
        category TEXT,
        bureau TEXT,
        fields TEXT NOT NULL,
        summary TEXT NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE drafts (
        id TEXT PRIMARY KEY,
        session TEXT,
        form TEXT NOT NULL,
        status TEXT NOT NULL,
        created BIGINT NOT NULL,
        expires BIGINT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE mydata_pending (
        tx_id TEXT PRIMARY KEY,
        session TEXT NOT NULL,
        form TEXT NOT NULL,
        created BIGINT NOT NULL
    );
    CREATE TABLE transfer_log (
        id {id},
        time BIGINT NOT NULL,
        kind TEXT NOT NULL,
        counterpart TEXT NOT NULL,
        subject TEXT NOT NULL,
        form TEXT NOT NULL,
        tx_id TEXT NOT NULL,
        datasets TEXT NOT NULL,
        success BIGINT NOT NULL,
        reason TEXT
    );
    CREATE INDEX transfer_log_subject ON transfer_log (subject);
    CREATE TABLE audit_log (
        id {id},
        time BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL
    );",
    // 2: transcribed phone calls (kept like conversations, then purged).
    "CREATE TABLE calls (
        id TEXT PRIMARY KEY,
        started BIGINT NOT NULL,
        updated BIGINT NOT NULL,
        status TEXT NOT NULL,
        source TEXT NOT NULL,
        transcript TEXT NOT NULL,
        taken_by TEXT NOT NULL
    );
    CREATE INDEX calls_updated ON calls (updated);",
    // 3: failed logins and the locks they cause (per account and per client address), kept in
    // the database so a lock holds across sessions and instances.
    "CREATE TABLE login_failures (
        id {id},
        time BIGINT NOT NULL,
        username TEXT NOT NULL,
        addr TEXT NOT NULL
    );
    CREATE INDEX login_failures_username ON login_failures (username, time);
    CREATE INDEX login_failures_addr ON login_failures (addr, time);
    CREATE TABLE login_locks (
        key TEXT PRIMARY KEY,
        until BIGINT NOT NULL,
        created BIGINT NOT NULL,
        failures BIGINT NOT NULL
    );",
    // 4: how many callers reported a case (an agent links a repeat report instead of creating a
    // duplicate case).
    "ALTER TABLE cases ADD COLUMN reports BIGINT NOT NULL DEFAULT 1;",
    // 5: the case history for decision support (imported 1999 dispatch records and the
    // product's own dispatched cases), one row per distinct (category, address, day, time):
    // published case ids are truncated or lost, so the content is the key. `block` is the
    // address without its house number (what views outside the administrators show).
    "CREATE TABLE case_records (
        id {id},
        source TEXT NOT NULL,
        case_no TEXT NOT NULL,
        category TEXT NOT NULL,
        district TEXT NOT NULL,
        village TEXT NOT NULL,
        address TEXT NOT NULL,
        block TEXT NOT NULL,
        day BIGINT NOT NULL,
        time TEXT NOT NULL,
        hour BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX case_records_content ON case_records (category, address, day, time);",
    // 6: knowledge gaps: questions handed off or answered with low confidence, with personal
    // details removed, kept as long as conversations.
    "CREATE TABLE knowledge_gaps (
        id {id},
        time BIGINT NOT NULL,
        question TEXT NOT NULL,
        reason TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        bureau TEXT NOT NULL
    );
    CREATE INDEX knowledge_gaps_time ON knowledge_gaps (time);",
    // 7: uploaded guides live in the database, so every instance behind a load balancer
    // serves the same ones (each keeps a copy in its `server.uploads_dir` and indexes it).
    "CREATE TABLE guide_files (
        name TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL,
        content TEXT NOT NULL,
        actor TEXT NOT NULL,
        updated BIGINT NOT NULL
    );",
];
