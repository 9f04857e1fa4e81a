"""The file's own vocabulary: the names both sides of a sync agree on.

A file is pydal's CSV format (see csvstream) plus these conventions, written by
export and read by merge; both import them from here, so that neither has to
ask the other what a column means. A leaf: it imports nothing of the engine.

- `table.field@uuid` (suffix UUID): the uuid behind a reference, one annotation
  column per reference, list:reference, `deleted_rb` and `deleted_fk`
  (tables.annotations()); a reference to a super-entity (pe_id, site_id...) carries
  the super record's uuid, `owned_by_group` (an integer in Eden) its role's uuid;
- `table.field@email` (suffix EMAIL): a reference to a user account (created_by,
  modified_by, owned_by_user) where the host names users by email (Eden;
  entities.key_of): the receiver maps it to its own account of that email;
- `id@seq` (ROW_SEQ), per row: the sender's change seq of the version written;
- the header block, `TABLE sync_instance` (IDENTITY_TABLE): the sender's identity
  (IDENTITY_COLUMNS) and the change range `since@seq`/`until@seq`, then one row
  per peer with the sender's checkpoint of that peer (`merged@seq`), and
  `tables@seq` for a file of some tables only, `after@seq`/`next@seq` for a batch of a range;
- the tombstone block, `TABLE plugin_sync_tombstone` (TOMBSTONE_TABLE), last:
  the hard deletions (TOMBSTONE_COLUMNS);
- NULL, the cell of a missing value, and END, the file's last line.
"""
NULL = "<NULL>"
UUID = "@uuid"  # suffix of the annotation columns: the uuid behind a reference
EMAIL = "@email"  # ... the email behind a reference to a user account (entities.key_of)
END = "END"

IDENTITY_TABLE = "sync_instance"
IDENTITY_COLUMNS = ("base_uuid", "uuid", "owner", "contact", "url", "last_update")
# identity-section annotations: the change range exported (sender's row), and for
# each peer (further rows) the sender's checkpoint of that peer's changes it has merged
SINCE, UNTIL, MERGED = "since@seq", "until@seq", "merged@seq"
# the tables a partial export holds (|a|b|), NULL for all: the receiver's checkpoint of the
# sender must not move past changes of the tables left out
PARTIAL = "tables@seq"
CHECKPOINTS = (SINCE, UNTIL, MERGED)  # whole numbers or nothing
# a batch of a range (replicate's batched syncs): the position in [since, until) after which its records
# start (`after@seq`, NULL: the range's start) and where the next batch starts (`next@seq`, NULL: this
# batch ends the range, tombstones included); a position is "table:id", records ordered by table
# (the export's order), then id
AFTER, NEXT = "after@seq", "next@seq"
# per row: the sender's change seq of the version exported; the receiver skips a version
# below its checkpoint of the sender (merged already: a full or stale file re-sends it)
ROW_SEQ = "id@seq"

TOMBSTONE_TABLE = "plugin_sync_tombstone"
TOMBSTONE_COLUMNS = ("tablename", "record_uuid", "deleted_on", "origin")

