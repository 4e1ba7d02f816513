"""Archive before delete: the rows a batch deletes, written to a file and fsynced before the
batch commits (`writer`), listed and verified against the ledger (`store`), put back
(`restore`)."""
