// mkdb writes a tiny trivy vulnerability DB (a bbolt file) from a JSON list of
// {"path": [bucket, nested bucket...], "key": ..., "value": {...}} entries, so tests can
// run real trivy vulnerability scans without downloading the real DB.
package main

import (
	"encoding/json"
	"log"
	"os"

	bolt "go.etcd.io/bbolt"
)

type entry struct {
	Path  []string        `json:"path"`
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

func main() {
	if len(os.Args) != 3 {
		log.Fatal("usage: mkdb ENTRIES.json OUT.db")
	}
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	var entries []entry
	if err := json.Unmarshal(data, &entries); err != nil {
		log.Fatal(err)
	}
	db, err := bolt.Open(os.Args[2], 0o644, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		for _, e := range entries {
			bucket, err := tx.CreateBucketIfNotExists([]byte(e.Path[0]))
			if err != nil {
				return err
			}
			for _, name := range e.Path[1:] {
				if bucket, err = bucket.CreateBucketIfNotExists([]byte(name)); err != nil {
					return err
				}
			}
			if err := bucket.Put([]byte(e.Key), e.Value); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
