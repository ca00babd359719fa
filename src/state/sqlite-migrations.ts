/**
 * Schema migrations for the SQLite store, applied in order; PRAGMA user_version records how many
 * ran. Append only: never edit a migration that has shipped.
 */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE volumes (
     name TEXT PRIMARY KEY,
     driver TEXT NOT NULL,
     options TEXT NOT NULL,
     given_options TEXT NOT NULL,
     remove_policy TEXT NOT NULL,
     adopted INTEGER NOT NULL,
     created_at TEXT NOT NULL,
     status TEXT NOT NULL,
     fields TEXT NOT NULL
   );
   CREATE INDEX volumes_driver ON volumes(driver);
   CREATE TABLE attachments (
     volume TEXT NOT NULL,
     host TEXT NOT NULL,
     device TEXT NOT NULL,
     state TEXT NOT NULL,
     updated_at TEXT NOT NULL,
     PRIMARY KEY (volume, host)
   );
   CREATE INDEX attachments_host ON attachments(host);
   CREATE TABLE mounts (
     volume TEXT NOT NULL,
     host TEXT NOT NULL,
     mountpoint TEXT NOT NULL,
     refs TEXT NOT NULL,
     state TEXT NOT NULL,
     updated_at TEXT NOT NULL,
     PRIMARY KEY (volume, host)
   );
   CREATE INDEX mounts_host ON mounts(host);
   CREATE TABLE hosts (
     id TEXT PRIMARY KEY,
     identity TEXT NOT NULL,
     last_seen TEXT NOT NULL
   );
   CREATE TABLE journal (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     volume TEXT NOT NULL,
     host TEXT NOT NULL,
     op TEXT NOT NULL,
     details TEXT NOT NULL,
     started_at TEXT NOT NULL
   );
   CREATE INDEX journal_host ON journal(host);
   CREATE TABLE locks (
     key TEXT PRIMARY KEY,
     owner TEXT NOT NULL,
     expires_at INTEGER NOT NULL
   );`,
  // 2: requests of the doors that cannot serve metrics themselves (flexvolume, CLI), one row per
  // host, labels and latency bucket, counted up in place; the daemon reads this host's rows at each
  // scrape. WITHOUT ROWID: the rows are found and kept in key order, with no second index.
  `CREATE TABLE request_tallies (
     host TEXT NOT NULL,
     door TEXT NOT NULL,
     driver TEXT NOT NULL,
     operation TEXT NOT NULL,
     code TEXT NOT NULL,
     le TEXT NOT NULL,
     count INTEGER NOT NULL,
     seconds REAL NOT NULL,
     PRIMARY KEY (host, door, driver, operation, code, le)
   ) WITHOUT ROWID;`,
];
