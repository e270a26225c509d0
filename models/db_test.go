package models

import (
	"database/sql"
	"testing"
)

// TestSQLiteConnectionSettings: the connections of both pools carry the
// settings of sqliteConnPragmas, and the DSN's synchronous=FULL.
func TestSQLiteConnectionSettings(t *testing.T) {
	db := openTest(t)
	write, _ := db.write.DB()
	read, _ := db.read.DB()
	for _, tc := range []struct {
		pragma string
		want   int64
	}{{"cache_size", -32768}, {"mmap_size", 268435456}, {"temp_store", 2}, {"synchronous", 2}, {"wal_autocheckpoint", 0}} {
		for name, pool := range map[string]*sql.DB{"write": write, "read": read} {
			var got int64
			if err := pool.QueryRowContext(t.Context(), "PRAGMA "+tc.pragma).Scan(&got); err != nil {
				t.Fatalf("PRAGMA %s on the %s pool: %v", tc.pragma, name, err)
			}
			if got != tc.want {
				t.Errorf("PRAGMA %s = %d on the %s pool, want %d", tc.pragma, got, name, tc.want)
			}
		}
	}
}
