// Command wsclients holds N WebSocket clients open against one URL and records, for every
// message, the number it carries and the wall-clock time of receipt (bench/subscriptions.py).
//
// It exists so that the receivers cost the server's machine as little as possible: 1,000
// Python clients in one process need a core of their own and add their own tail to every
// figure, while real subscribers sit on other machines.
//
//	wsclients -url ws://... -n 1000 [-protocol graphql-transport-ws] [-init JSON] [-subscribe JSON] \
//	          -number REGEXP
//
// Protocol: prints "ready" on stdout once every client is connected (and, for GraphQL, has
// received its first message); then, when stdin is closed or a line is read from it, closes the
// clients and prints one JSON object: {"received": [[number, unix_ns], ...], "errors": [...]}.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

type receipt [2]int64

func main() {
	url := flag.String("url", "", "ws:// URL")
	n := flag.Int("n", 1000, "number of clients")
	protocol := flag.String("protocol", "", "subprotocol (empty: raw WebSocket)")
	initMsg := flag.String("init", "", "first message to send (connection_init); its answer is read")
	subscribe := flag.String("subscribe", "", "second message to send (subscribe); its first answer is read")
	number := flag.String("number", "", "regexp with one group: the message number")
	wave := flag.Int("wave", 50, "clients connected at once")
	compress := flag.Bool("compress", false, "offer permessage-deflate")
	flag.Parse()
	pattern := regexp.MustCompile(*number)

	dialer := websocket.Dialer{HandshakeTimeout: 30 * time.Second, EnableCompression: *compress}
	if *protocol != "" {
		dialer.Subprotocols = []string{*protocol}
	}

	var mu sync.Mutex
	var received []receipt
	var errors []string
	fail := func(err error) {
		mu.Lock()
		errors = append(errors, err.Error())
		mu.Unlock()
	}

	conns := make([]*websocket.Conn, 0, *n)
	var readers sync.WaitGroup
	for start := 0; start < *n; start += *wave {
		var connecting sync.WaitGroup
		for i := start; i < start+*wave && i < *n; i++ {
			connecting.Add(1)
			go func() {
				defer connecting.Done()
				c, _, err := dialer.Dial(*url, nil)
				if err != nil {
					fail(err)
					return
				}
				for _, msg := range []string{*initMsg, *subscribe} {
					if msg == "" {
						continue
					}
					if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
						fail(err)
						return
					}
					if _, _, err := c.ReadMessage(); err != nil {
						fail(err)
						return
					}
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}()
		}
		connecting.Wait()
	}
	for _, c := range conns {
		readers.Add(1)
		go func(c *websocket.Conn) {
			defer readers.Done()
			local := make([]receipt, 0, 64)
			for {
				_, data, err := c.ReadMessage()
				now := time.Now().UnixNano()
				if err != nil {
					break
				}
				if m := pattern.FindSubmatch(data); m != nil {
					if v, err := strconv.ParseInt(string(m[1]), 10, 64); err == nil {
						local = append(local, receipt{v, now})
					}
				}
			}
			mu.Lock()
			received = append(received, local...)
			mu.Unlock()
		}(c)
	}
	fmt.Println("ready", len(conns))
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	for _, c := range conns {
		_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
		_ = c.Close()
	}
	readers.Wait()
	out, _ := json.Marshal(map[string]any{"received": received, "errors": errors})
	fmt.Println(string(out))
}
