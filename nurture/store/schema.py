"""The database schema, as sqlite-utils migrations. Times are REAL seconds since the epoch (UTC).

The same tables serve the PostgreSQL backend; keep the DDL portable (no SQLite-only types).
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

#: Registered, and so applied to a new database, in name order (tests/test_store_schema.py checks).
#: A database keeps the names it has applied, so each migration runs once whatever the order.
migrations = Migrations("nurture")


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE contacts (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL,
            email_key TEXT NOT NULL UNIQUE,      -- lower(email): upserts are case-insensitive
            first_name TEXT NOT NULL DEFAULT '',
            last_name TEXT NOT NULL DEFAULT '',
            company TEXT NOT NULL DEFAULT '',
            industry TEXT NOT NULL DEFAULT '',
            phone TEXT NOT NULL DEFAULT '',
            timezone TEXT,
            owner TEXT,
            territory TEXT,
            attributes TEXT NOT NULL DEFAULT '{}',   -- JSON: extra CSV columns
            status TEXT NOT NULL DEFAULT 'active',   -- active | unsubscribed | bounced
            score REAL NOT NULL DEFAULT 0,
            score_at REAL,
            hot INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX contacts_owner ON contacts(owner);

        CREATE TABLE campaigns (
            id TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            content_hash TEXT NOT NULL,
            name TEXT NOT NULL,
            source TEXT NOT NULL,        -- the YAML as applied
            steps TEXT NOT NULL,         -- JSON list of step ids, in order
            updated_at REAL NOT NULL
        );

        CREATE TABLE enrollments (
            id INTEGER PRIMARY KEY,
            campaign_id TEXT NOT NULL,
            contact_id INTEGER NOT NULL REFERENCES contacts(id),
            state TEXT NOT NULL DEFAULT 'active',   -- active | completed | exited
            next_step TEXT,
            next_at REAL,                 -- when next_step is due; NULL while a send is in flight
            next_wait REAL,               -- seconds from the in-flight send's delivery to next_step
            last_sent_at REAL,
            exit_reason TEXT,
            campaign_version INTEGER,
            enrolled_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            UNIQUE (campaign_id, contact_id)
        );
        CREATE INDEX enrollments_due ON enrollments(state, next_at);
        CREATE INDEX enrollments_contact ON enrollments(contact_id);

        CREATE TABLE sends (
            id INTEGER PRIMARY KEY,
            enrollment_id INTEGER NOT NULL REFERENCES enrollments(id),
            campaign_id TEXT NOT NULL,
            step_id TEXT NOT NULL,
            contact_id INTEGER NOT NULL REFERENCES contacts(id),
            status TEXT NOT NULL DEFAULT 'queued',  -- queued | sending | sent | retry | failed | skipped | suppressed
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            lease_owner TEXT,
            lease_until REAL,
            message_id TEXT,
            queued_at REAL NOT NULL,
            sent_at REAL,                           -- the SMTP server's 250: delivery time
            error_code INTEGER,
            error_enhanced TEXT,
            last_error TEXT,
            UNIQUE (enrollment_id, step_id)
        );
        CREATE INDEX sends_claim ON sends(status, next_attempt_at);
        CREATE INDEX sends_contact ON sends(contact_id);
        CREATE INDEX sends_campaign ON sends(campaign_id, step_id, status);

        CREATE TABLE links (
            id INTEGER PRIMARY KEY,
            campaign_id TEXT NOT NULL,
            step_id TEXT NOT NULL,
            name TEXT NOT NULL,
            url TEXT NOT NULL,
            honeypot INTEGER NOT NULL DEFAULT 0,
            UNIQUE (campaign_id, step_id, name, url)
        );

        CREATE TABLE clicks (
            id INTEGER PRIMARY KEY,
            send_id INTEGER NOT NULL,
            link_id INTEGER,                        -- NULL for opens
            kind TEXT NOT NULL DEFAULT 'click',     -- click | open
            at REAL NOT NULL,
            ip TEXT,
            user_agent TEXT,
            method TEXT NOT NULL,
            verdict TEXT NOT NULL DEFAULT 'pending', -- pending | human | scanner
            score REAL NOT NULL DEFAULT 0,
            reasons TEXT NOT NULL DEFAULT '[]',      -- JSON list of strings
            settled_at REAL,
            handled INTEGER NOT NULL DEFAULT 0       -- follow-up rules applied
        );
        CREATE INDEX clicks_send ON clicks(send_id, at);
        CREATE INDEX clicks_verdict ON clicks(verdict, at);
        CREATE INDEX clicks_ip ON clicks(ip, at);
        CREATE INDEX clicks_unhandled ON clicks(handled, verdict);

        CREATE TABLE tasks (
            id INTEGER PRIMARY KEY,
            contact_id INTEGER NOT NULL REFERENCES contacts(id),
            campaign_id TEXT NOT NULL,
            rep_id TEXT,
            kind TEXT NOT NULL,                     -- call_now | call | email
            priority INTEGER NOT NULL,              -- 0 urgent, 1 high, 2 normal, 3 low
            status TEXT NOT NULL DEFAULT 'open',    -- open | done
            due_at REAL NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            context TEXT NOT NULL DEFAULT '{}',     -- JSON: clicks timeline, step, links
            outcome TEXT,
            notes TEXT,
            bant TEXT NOT NULL DEFAULT '{}',
            snooze_until REAL,
            escalated_at REAL,
            done_at REAL
        );
        CREATE INDEX tasks_rep ON tasks(rep_id, status, priority, due_at);
        CREATE INDEX tasks_contact ON tasks(contact_id, campaign_id, status);
        CREATE INDEX tasks_due ON tasks(status, due_at);

        CREATE TABLE suppressions (
            email_key TEXT PRIMARY KEY,
            reason TEXT NOT NULL,                   -- unsubscribed | bounced | complaint | manual
            at REAL NOT NULL
        );

        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX events_kind ON events(kind, at);

        CREATE TABLE webhook_deliveries (
            event_id INTEGER NOT NULL,
            url TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,
            last_error TEXT,
            PRIMARY KEY (event_id, url)
        );
        CREATE INDEX webhook_pending ON webhook_deliveries(status, next_at);

        CREATE TABLE rep_tokens (
            token_hash TEXT PRIMARY KEY,
            rep_id TEXT NOT NULL,
            created_at REAL NOT NULL,
            revoked_at REAL
        );

        CREATE TABLE rate_state (
            name TEXT PRIMARY KEY,
            tokens REAL NOT NULL,
            updated_at REAL NOT NULL,
            slow_until REAL
        );
        """
    )


@migrations()
def m003_enrollments(db: Database) -> None:
    """Every applied version of every campaign, so a process holding an older copy of a
    campaign never re-applies it over a newer one."""
    db.executescript(
        """
        CREATE TABLE campaign_versions (
            campaign_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            content_hash TEXT NOT NULL,
            steps TEXT NOT NULL,                 -- JSON list of step ids, in order
            source TEXT NOT NULL,
            applied_at REAL NOT NULL,
            PRIMARY KEY (campaign_id, version)
        );
        CREATE INDEX campaign_versions_hash ON campaign_versions(campaign_id, content_hash);
        INSERT INTO campaign_versions (campaign_id, version, content_hash, steps, source, applied_at)
            SELECT id, version, content_hash, steps, source, updated_at FROM campaigns;
        """
    )


@migrations()
def m005_followup(db: Database) -> None:
    """Reps' sessions, one open task per contact and campaign, webhook fan-out cursors."""
    db.executescript(
        """
        CREATE TABLE rep_sessions (
            session_hash TEXT PRIMARY KEY,          -- sha256 of the cookie value
            rep_id TEXT NOT NULL,
            csrf TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL
        );
        CREATE UNIQUE INDEX tasks_one_open ON tasks(contact_id, campaign_id) WHERE status = 'open';
        CREATE INDEX tasks_created ON tasks(rep_id, created_at);

        CREATE TABLE webhook_cursor (
            url TEXT PRIMARY KEY,
            last_event_id INTEGER NOT NULL           -- events up to here are queued for url
        );
        """
    )


@migrations()
def m009_outbox(db: Database) -> None:
    """Claiming around a campaign that waits on its own rate: each other campaign's due rows
    are walked in order (and the campaigns found by a loose index scan)."""
    db.executescript("CREATE INDEX sends_claim_campaign ON sends(status, campaign_id, next_attempt_at);")


@migrations()
def m010_pending_clicks_index(db: Database) -> None:
    """Only pending clicks in the settle queue's index (issue 7, bench/scale.py).

    ``clicks(verdict, at)`` led on a column with three values, so the planner took it for
    per-contact questions too: counting one contact's human clicks of the week walked every
    human click of the week (0.4 s each at 100,000 clicks; follow-up handled 4 clicks a
    second). A partial index holds just the queue the settle pass reads, in its order.
    """
    db.executescript(
        """
        DROP INDEX IF EXISTS clicks_verdict;
        CREATE INDEX clicks_pending ON clicks(at) WHERE verdict = 'pending';
        """
    )


@migrations()
def m011_contact_fields(db: Database) -> None:
    """Fields the common CRM and business-card exports carry (issue 16): the country as
    written, job title and department."""
    db.executescript(
        """
        ALTER TABLE contacts ADD COLUMN country TEXT NOT NULL DEFAULT '';
        ALTER TABLE contacts ADD COLUMN title TEXT NOT NULL DEFAULT '';
        ALTER TABLE contacts ADD COLUMN department TEXT NOT NULL DEFAULT '';
        """
    )


@migrations()
def m012_click_evidence(db: Database) -> None:
    """The click ledger also holds evidence that is never a click (issue 19): opens
    (``kind = 'open'``) and GETs of the unsubscribe page (``kind = 'unsubscribe'``). They stay
    ``pending`` for ever (nothing judges them), so the settle queue's index takes only clicks:
    otherwise every open and unsubscribe-page fetch ever recorded would sit in it."""
    db.executescript(
        """
        DROP INDEX IF EXISTS clicks_pending;
        CREATE INDEX clicks_pending ON clicks(at) WHERE verdict = 'pending' AND kind = 'click';
        """
    )


@migrations()
def m013_inbound(db: Database) -> None:
    """What comes back (issue 13): one row per inbound message or provider event, applied at
    most once (``dedupe_key``); sends found by Message-ID; enrollments paused by an
    out-of-office until a date (``mark_sent`` keeps ``next_at`` at or after it)."""
    db.executescript(
        """
        CREATE TABLE inbound (
            id INTEGER PRIMARY KEY,
            received_at REAL NOT NULL,
            source TEXT NOT NULL,                   -- pipe | smtp | imap | ses | sendgrid | ...
            dedupe_key TEXT NOT NULL UNIQUE,        -- the Message-ID, a provider event id, or a hash
            kind TEXT NOT NULL,                     -- hard_bounce | soft_bounce | complaint | auto_reply | ...
            status TEXT,                            -- RFC 3463 status, e.g. 5.1.1
            recipient TEXT,                         -- the failed / complaining address the report names
            send_id INTEGER,                        -- the send it was matched to (NULL: none)
            contact_id INTEGER,
            campaign_id TEXT,
            step_id TEXT,
            matched_by TEXT,                        -- verp | reply address | message-id | provider
            action TEXT NOT NULL DEFAULT '',        -- what was done
            reasons TEXT NOT NULL DEFAULT '[]',     -- JSON list of strings
            out_of_office INTEGER NOT NULL DEFAULT 0,
            resume_at REAL,                         -- an out-of-office pause ends here
            new_text TEXT,
            subject TEXT,
            sender TEXT,
            size INTEGER NOT NULL DEFAULT 0,
            task_id INTEGER
        );
        CREATE INDEX inbound_received ON inbound(received_at);
        CREATE INDEX inbound_contact ON inbound(contact_id, kind, received_at);
        CREATE INDEX inbound_campaign ON inbound(campaign_id, step_id, kind);
        CREATE INDEX sends_message_id ON sends(message_id);
        ALTER TABLE enrollments ADD COLUMN paused_until REAL;
        """
    )


@migrations()
def m014_senders(db: Database) -> None:
    """Running senders and their heartbeats (issue 18): a sender that finds the owner of a
    lease gone (its pid dead on this machine, or its heartbeat stale) takes the rows back
    at once instead of waiting for the lease to lapse."""
    db.executescript(
        """
        CREATE TABLE senders (
            owner TEXT PRIMARY KEY,      -- the lease owner name (host:pid:random)
            machine TEXT NOT NULL,       -- host, boot id and pid namespace
            pid INTEGER NOT NULL,
            started TEXT,                -- the process start time (clock ticks), when known
            beat_at REAL NOT NULL
        );
        """
    )


@migrations()
def m015_task_attempts(db: Database) -> None:
    """Call attempts (issue 17): unanswered calls so far, the cadence the rule set when the
    task was raised (JSON: attempts, retry, unreachable, timezone) and one log entry per call."""
    db.executescript(
        """
        ALTER TABLE tasks ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE tasks ADD COLUMN cadence TEXT;
        ALTER TABLE tasks ADD COLUMN attempt_log TEXT NOT NULL DEFAULT '[]';
        """
    )


@migrations()
def m016_task_changes(db: Database) -> None:
    """A sequence of task changes (issue 17): every new or changed task appends a row, and
    the reps' app streams them to open pages (``GET /api/stream``, ``Last-Event-ID`` = the
    row id). The database is the source, so it works across ``nurture serve`` workers."""
    db.executescript(
        """
        CREATE TABLE task_changes (
            id INTEGER PRIMARY KEY,
            task_id INTEGER NOT NULL,
            rep_id TEXT,                  -- whose list it concerns (a reassign writes both reps)
            at REAL NOT NULL
        );
        CREATE INDEX task_changes_rep ON task_changes(rep_id, id);
        """
    )


@migrations()
def m017_forwards(db: Database) -> None:
    """Replies that came to a ``reply+`` address, forwarded to the owner rep (issue 13): the
    forward's bytes are built when the reply is received (on the writer thread) and sent by
    the ``forwards`` part over the relay, at most once per inbound message (``inbound_id``)."""
    db.executescript(
        """
        CREATE TABLE forwards (
            id INTEGER PRIMARY KEY,
            inbound_id INTEGER NOT NULL UNIQUE,     -- the reply forwarded (at most once)
            created_at REAL NOT NULL,
            contact_id INTEGER,
            task_id INTEGER,
            rep_id TEXT,                            -- NULL: no rep, to the team's address
            recipient TEXT NOT NULL,
            mail_from TEXT NOT NULL,                -- the envelope sender
            message_id TEXT NOT NULL,
            data BLOB NOT NULL,                     -- the message (DKIM-signed when sent)
            status TEXT NOT NULL DEFAULT 'queued',  -- queued | sending | retry | sent | failed
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            sent_at REAL,
            last_error TEXT
        );
        CREATE INDEX forwards_due ON forwards(status, next_attempt_at);
        """
    )


@migrations()
def m018_relay_state(db: Database) -> None:
    """What the sender learned about its relay (issue 14): the rate and connection count it
    accepted, a pause it asked for, its last throttle reply; kept across restarts."""
    db.executescript(
        """
        CREATE TABLE relay_state (
            name TEXT PRIMARY KEY,                  -- host:port
            rate REAL NOT NULL,                     -- messages per second allowed now
            pool INTEGER NOT NULL,                  -- connections allowed now
            hold_until REAL,                        -- no transaction before this
            last_reply TEXT,
            last_reply_at REAL,
            updated_at REAL NOT NULL
        );
        """
    )


@migrations()
def m019_webhook_tokens(db: Database) -> None:
    """Webhook signatures seen (issue 13): Mailgun signs only a timestamp and a token, not the
    event, so each token is accepted once; kept in the database so a restart or another
    tracker sharing it refuses a replay too. Rows older than the tolerance are pruned."""
    db.executescript(
        """
        CREATE TABLE webhook_tokens (
            provider TEXT NOT NULL,
            token TEXT NOT NULL,
            seen_at REAL NOT NULL,
            PRIMARY KEY (provider, token)
        );
        CREATE INDEX webhook_tokens_seen ON webhook_tokens(seen_at);
        """
    )


@migrations()
def m020_pacing(db: Database) -> None:
    """``pace: reps`` (issue 17): what the scheduler held back for the reps' capacity, per
    campaign, as of its last tick (``nurture stats``, the manager view)."""
    db.executescript(
        """
        CREATE TABLE pacing (
            campaign_id TEXT PRIMARY KEY,
            held INTEGER NOT NULL DEFAULT 0,        -- enrollments waiting for capacity now
            released INTEGER NOT NULL DEFAULT 0,    -- paced sends let through, all time
            free_slots INTEGER NOT NULL DEFAULT 0,  -- the reps' room on their next working day
            expect REAL NOT NULL DEFAULT 0,         -- call-now tasks expected per mail
            held_since REAL,                        -- when the current hold began (NULL: none)
            updated_at REAL NOT NULL
        );
        """
    )
