package webhooks_test

import (
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/loft-relay/loft/clients/go/webhooks"
)

func ExampleSign() {
	sig, err := webhooks.Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sig)
	// Output: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
}

func ExampleHandler() {
	v, err := webhooks.NewVerifier("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		log.Fatal(err)
	}
	http.Handle("/webhooks/loft", webhooks.Handler(v, func(w http.ResponseWriter, r *http.Request, ev webhooks.Event) {
		// ev.ID is stable across retries: skip events already handled.
		log.Printf("%s %s: %d bytes", ev.ID, ev.Type, len(ev.Body))
		w.WriteHeader(http.StatusNoContent)
	}))
}
