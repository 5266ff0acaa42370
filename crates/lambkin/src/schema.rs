//! Schema versions of the host's SQLite databases (the state database, the spool), kept in
//! SQLite's `user_version`. Each database has a list of steps; step `i` takes a database of
//! version `i` to `i + 1`, and version 0 is one made before versions were kept (or a new,
//! empty file), so the first step creates the tables if they are not there. At start the
//! missing steps run in one transaction, the new version with them: an upgrade is done whole
//! or not at all. A database of a newer version than the binary knows is refused before
//! anything is written to it: a downgraded host never damages what a newer one wrote.

use rusqlite::{Connection, TransactionBehavior};

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "{database} has schema version {found}, newer than this Lambkin's ({known}): a newer \
         Lambkin wrote it. Run that version, or restore a backup made with this one; the file \
         was left as it was"
    )]
    Newer {
        database: String,
        found: i64,
        known: i64,
    },
    #[error("{database}: migrating the schema from version {from} to {to} failed: {source}")]
    Migration {
        database: String,
        from: i64,
        to: i64,
        source: rusqlite::Error,
    },
    #[error("{database}: reading the schema version failed: {0}", database = .1)]
    Read(rusqlite::Error, String),
}

/// The version a database with all of `steps` applied has.
pub fn known(steps: &[&str]) -> i64 {
    i64::try_from(steps.len()).unwrap_or(i64::MAX)
}

/// Refuses a database newer than `steps` know, before anything is written to it. Returns its
/// version.
pub fn check(conn: &Connection, database: &str, steps: &[&str]) -> Result<i64, SchemaError> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| SchemaError::Read(e, database.to_owned()))?;
    let known = known(steps);
    if found > known {
        return Err(SchemaError::Newer {
            database: database.to_owned(),
            found,
            known,
        });
    }
    Ok(found)
}

/// Brings the database to the newest version: the missing steps and the new version in one
/// transaction. Returns the version it had.
pub fn migrate(conn: &mut Connection, database: &str, steps: &[&str]) -> Result<i64, SchemaError> {
    let found = check(conn, database, steps)?;
    let known = known(steps);
    if found == known {
        return Ok(found);
    }
    let failed = |source| SchemaError::Migration {
        database: database.to_owned(),
        from: found,
        to: known,
        source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(failed)?;
    for step in steps.iter().skip(usize::try_from(found).unwrap_or(0)) {
        tx.execute_batch(step).map_err(failed)?;
    }
    tx.pragma_update(None, "user_version", known)
        .map_err(failed)?;
    tx.commit().map_err(failed)?;
    if found > 0 {
        tracing::info!(database, from = found, to = known, "schema migrated");
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: &[&str] = &[
        "CREATE TABLE IF NOT EXISTS t (a INTEGER);",
        "ALTER TABLE t ADD COLUMN b INTEGER NOT NULL DEFAULT 7;",
    ];

    fn version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_database_from_before_versions_gets_every_step_and_keeps_its_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
        assert_eq!(migrate(&mut conn, "test.db", STEPS).unwrap(), 0);
        assert_eq!(version(&conn), 2);
        let (a, b): (i64, i64) = conn
            .query_row("SELECT a, b FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!((a, b), (1, 7));
        // Again: nothing to do.
        assert_eq!(migrate(&mut conn, "test.db", STEPS).unwrap(), 2);
    }

    #[test]
    fn a_failing_step_leaves_the_database_as_it_was() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
        let steps = &[
            STEPS[0],
            STEPS[1],
            "ALTER TABLE missing ADD COLUMN c INTEGER;",
        ];
        let e = migrate(&mut conn, "test.db", steps).unwrap_err();
        assert!(e.to_string().contains("from version 0 to 3"), "{e}");
        assert_eq!(version(&conn), 0, "the version is not moved");
        let columns: i64 = conn
            .query_row("SELECT COUNT(*) FROM pragma_table_info('t')", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(columns, 1, "the steps before the failing one are undone");
    }

    #[test]
    fn a_newer_database_is_refused_untouched() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER); PRAGMA user_version = 5;")
            .unwrap();
        let e = migrate(&mut conn, "test.db", STEPS).unwrap_err();
        assert!(
            matches!(
                e,
                SchemaError::Newer {
                    found: 5,
                    known: 2,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("newer than this Lambkin's"), "{e}");
        assert_eq!(version(&conn), 5);
    }
}
