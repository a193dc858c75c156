package journal_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
)

func Example() {
	dir, err := os.MkdirTemp("", "journal")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	j, err := journal.Open(ctx, journal.Config{DataDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer j.Close()

	payload := []byte(`{"eventType":"listener-triggered","transferId":"t-1","messageId":"m-1"}`)
	e, err := engine.Parse(engine.SourceConnect, payload)
	if err != nil {
		log.Fatal(err)
	}
	e.Issuer, e.ReceivedAt = "client-key", time.Now()
	for range 2 { // a re-delivery is recognised
		ack, err := j.Append(ctx, e)
		if err != nil {
			log.Fatal(err) // errors.Is(err, journal.ErrUnavailable): answer 503
		}
		fmt.Println("seq", ack.Seq, "duplicate", ack.Duplicate)
	}

	for env, err := range j.Scan(ctx, journal.TransferEventsFilter("t-1")) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(env.Seq, env.ID, env.Kind, string(env.Payload))
	}
	// Output:
	// seq 1 duplicate false
	// seq 1 duplicate true
	// 1 m-1 listener-triggered {"eventType":"listener-triggered","transferId":"t-1","messageId":"m-1"}
}
