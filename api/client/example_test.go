package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/transferd/transferd/api/client"
)

func ExampleClient_Transfer() {
	c := client.New("http://127.0.0.1:8080", "my-api-token")
	v, err := c.Transfer(context.Background(), "e4166374-2345-4c31-918c-83b14eb644f6")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v.Phase)
	if v.NeedsAction != nil {
		fmt.Println("settle by", v.Deadlines.SettleBy)
	}
}

func ExampleClient_ListAll() {
	c := client.New("http://127.0.0.1:8080", "my-api-token")
	ctx := context.Background()
	for v, err := range c.ListAll(ctx, client.Filter{NeedsAction: "true"}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(v.TransferID, v.Phase)
	}
}

func ExampleClient_Follow() {
	c := client.New("http://127.0.0.1:8080", "my-api-token")
	// Every cancellation request from now on; the connection is resumed
	// after a drop without losing or repeating one.
	err := c.Follow(context.Background(), client.FollowOptions{Kind: "transfer-cancellation-requested"},
		func(m client.Message) error {
			e, err := m.Envelope()
			if err != nil {
				return err
			}
			fmt.Println(m.ID, e.TransferID, "wants to be cancelled")
			return nil
		})
	log.Fatal(err)
}
