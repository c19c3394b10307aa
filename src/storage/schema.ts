// The SQLite file's layout and its checks at open: a file that is not Petrel's, is corrupt or comes from a
// newer Petrel stops start-up with one line naming the file and the problem, and is left untouched; an
// older schema is migrated in one transaction.
import type Database from 'better-sqlite3';

/** PRAGMA application_id of a Petrel data file: "PTRL". */
export const APPLICATION_ID = 0x5054524c;
/** PRAGMA user_version: the schema this code writes. */
export const SCHEMA_VERSION = 4;

/** Why the data file cannot be used; the message is one line naming the file and the problem. */
export class StorageError extends Error {
  override readonly name = 'StorageError';
}

/** Version 1, the first: a new file is made with it and then migrated like an old one. */
const TABLES_V1 = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE sessions (
  client_id TEXT PRIMARY KEY,
  expiry_interval INTEGER NOT NULL,
  expires_at INTEGER,          -- ms since the epoch; NULL while connected (or never expiring)
  client TEXT,                 -- ClientInfo as JSON
  will TEXT                    -- StoredWill as JSON, or NULL
) WITHOUT ROWID;
CREATE TABLE subscriptions (
  client_id TEXT NOT NULL,
  key TEXT NOT NULL,           -- the filter as subscribed, with any $share/group/ prefix
  entry TEXT NOT NULL,         -- SubscriptionEntry as JSON (QoS, No Local, RAP, Retain Handling, identifiers)
  PRIMARY KEY (client_id, key)
) WITHOUT ROWID;
-- A message queued for many sessions is stored once; queue and inflight rows refer to it (version 3: a
-- message queued for one session only is stored in its queue row instead).
CREATE TABLE messages (
  id INTEGER PRIMARY KEY,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  qos INTEGER NOT NULL,
  retain INTEGER NOT NULL,
  properties TEXT,
  expires_at INTEGER,
  from_client TEXT
);
CREATE TABLE queue (
  client_id TEXT NOT NULL,
  seq INTEGER NOT NULL,        -- order within the session's queue
  message_id INTEGER NOT NULL,
  qos INTEGER NOT NULL,
  retain INTEGER NOT NULL,
  subscription_ids TEXT,
  queued_at INTEGER NOT NULL,
  share_key TEXT,
  PRIMARY KEY (client_id, seq)
) WITHOUT ROWID;
CREATE TABLE inflight (
  client_id TEXT NOT NULL,
  packet_id INTEGER NOT NULL,
  message_id INTEGER NOT NULL,
  qos INTEGER NOT NULL,
  state TEXT NOT NULL,         -- 'publish' (PUBLISH sent) or 'pubrel' (PUBREL sent)
  retain INTEGER NOT NULL,
  subscription_ids TEXT,
  share_key TEXT,
  send_order INTEGER NOT NULL,
  PRIMARY KEY (client_id, packet_id)
) WITHOUT ROWID;
CREATE TABLE incoming_qos2 (
  client_id TEXT NOT NULL,
  packet_id INTEGER NOT NULL,
  PRIMARY KEY (client_id, packet_id)
) WITHOUT ROWID;
-- Wills of live connections whose sessions are not kept (clean): published after a restart if the process died.
CREATE TABLE live_wills (client_id TEXT PRIMARY KEY, will TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE retained (
  topic TEXT PRIMARY KEY,
  payload BLOB NOT NULL,
  qos INTEGER NOT NULL,
  properties TEXT,
  expires_at INTEGER,
  from_client TEXT
) WITHOUT ROWID;
`;

/** Migrations from version N-1 to N, by N. */
const MIGRATIONS: Record<number, string> = {
  // Start-up reads the retained topics without their payloads (read on demand): from this index alone,
  // however large the payloads are.
  2: 'CREATE INDEX retained_topics ON retained (topic, qos, expires_at);',
  // A message with one row only (queued for one offline session, or in flight to one session: the common
  // cases) is stored inline in that queue or in-flight row: one row per message instead of a messages row
  // and a row referring to it. message_id becomes optional (NULL: inline), which SQLite's ALTER TABLE cannot
  // do, so both tables are rebuilt; their rows are copied as they are (they keep referring to their messages).
  3: `
CREATE TABLE queue_v3 (
  client_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  message_id INTEGER,          -- the shared messages row; NULL when the message is inline (the columns below)
  qos INTEGER NOT NULL,
  retain INTEGER NOT NULL,
  subscription_ids TEXT,
  queued_at INTEGER NOT NULL,
  share_key TEXT,
  topic TEXT,                  -- inline message: as in messages
  payload BLOB,
  message_qos INTEGER,
  message_retain INTEGER,
  properties TEXT,
  expires_at INTEGER,
  from_client TEXT,
  packet_id INTEGER,           -- set when the message taken from this row is in flight (QoS 1, its PUBACK late)
  send_order INTEGER,
  PRIMARY KEY (client_id, seq)
) WITHOUT ROWID;
INSERT INTO queue_v3 (client_id, seq, message_id, qos, retain, subscription_ids, queued_at, share_key)
  SELECT client_id, seq, message_id, qos, retain, subscription_ids, queued_at, share_key FROM queue;
DROP TABLE queue;
ALTER TABLE queue_v3 RENAME TO queue;
CREATE TABLE inflight_v3 (
  client_id TEXT NOT NULL,
  packet_id INTEGER NOT NULL,
  message_id INTEGER,          -- NULL when the message is inline (the columns below)
  qos INTEGER NOT NULL,
  state TEXT NOT NULL,
  retain INTEGER NOT NULL,
  subscription_ids TEXT,
  share_key TEXT,
  send_order INTEGER NOT NULL,
  topic TEXT,
  payload BLOB,
  message_qos INTEGER,
  message_retain INTEGER,
  properties TEXT,
  expires_at INTEGER,
  from_client TEXT,
  PRIMARY KEY (client_id, packet_id)
) WITHOUT ROWID;
INSERT INTO inflight_v3 (client_id, packet_id, message_id, qos, state, retain, subscription_ids, share_key, send_order)
  SELECT client_id, packet_id, message_id, qos, state, retain, subscription_ids, share_key, send_order FROM inflight;
DROP TABLE inflight;
ALTER TABLE inflight_v3 RENAME TO inflight;
`,
  // Messages queued for one session in one commit group (a burst for an offline subscriber) go in one row, a
  // run, rather than a row each: SQLite's cost is per row far more than per byte. A message of a run that
  // leaves the queue while others of it stay is recorded in queue_runs_gone (ranges of seqs); the run and its
  // ranges go with its last message. Nothing to copy: existing queue rows stay as they are.
  4: `
CREATE TABLE queue_runs (
  client_id TEXT NOT NULL,
  seq INTEGER NOT NULL,        -- the first message's seq; the others follow one by one
  count INTEGER NOT NULL,      -- messages written in it
  messages BLOB NOT NULL,      -- codec.ts encodeRun
  PRIMARY KEY (client_id, seq)
) WITHOUT ROWID;
CREATE TABLE queue_runs_gone (
  client_id TEXT NOT NULL,
  seq INTEGER NOT NULL,        -- from
  to_seq INTEGER NOT NULL,     -- to (inclusive)
  PRIMARY KEY (client_id, seq)
) WITHOUT ROWID;
-- A message of a run in flight whose PUBACK is late (as queue.packet_id for a queue row): still recorded by its run.
CREATE TABLE queue_runs_moved (
  client_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  packet_id INTEGER NOT NULL,
  send_order INTEGER NOT NULL,
  PRIMARY KEY (client_id, seq)
) WITHOUT ROWID;
`,
};

function migrate(db: Database.Database, from: number): void {
  for (let v = from + 1; v <= SCHEMA_VERSION; v++) {
    const step = MIGRATIONS[v];
    if (step === undefined) throw new Error(`no migration to schema version ${v}`);
    db.exec(step);
  }
  db.pragma(`user_version = ${SCHEMA_VERSION}`);
}

/**
 * Checks the file and brings its schema to SCHEMA_VERSION. Throws StorageError (file untouched) when it is
 * not a Petrel file, is corrupt, or was written by a newer Petrel.
 */
export function prepareSchema(db: Database.Database, file: string): void {
  let appId: number;
  let version: number;
  let tables: number;
  try {
    appId = db.pragma('application_id', { simple: true }) as number;
    version = db.pragma('user_version', { simple: true }) as number;
    tables = (db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number }).n;
  } catch (err) {
    throw new StorageError(`${file}: not a SQLite database or corrupt (${(err as Error).message}); restore a backup or move the file away`);
  }
  if (appId === 0 && tables === 0) {
    // A new file: make the schema.
    db.transaction(() => {
      db.exec(TABLES_V1);
      db.pragma(`application_id = ${APPLICATION_ID}`);
      migrate(db, 1);
    })();
    return;
  }
  if (appId !== APPLICATION_ID) throw new StorageError(`${file}: not a Petrel data file (it is a SQLite database of something else; move it away or choose another --data-dir)`);
  if (version > SCHEMA_VERSION) throw new StorageError(`${file}: written by a newer Petrel (schema version ${version}, this one knows up to ${SCHEMA_VERSION}); upgrade Petrel or choose another --data-dir`);
  const check = db.pragma('quick_check', { simple: true }) as string;
  if (check !== 'ok') throw new StorageError(`${file}: the database is corrupt (${check}); restore a backup or move the file away`);
  if (version < SCHEMA_VERSION) {
    // All steps in one transaction: a migration that fails (or a process that dies in it) leaves the file
    // as it was, with its old schema.
    try {
      db.transaction(() => migrate(db, version))();
    } catch (err) {
      throw new StorageError(`${file}: migrating the schema from version ${version} to ${SCHEMA_VERSION} failed (${(err as Error).message}); the file is left as it was`);
    }
  }
}
