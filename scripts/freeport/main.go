// Command freeport prints free TCP ports on 127.0.0.1, one a line, for test
// scripts that start servers. -n N prints N distinct ports. -cluster picks
// ports whose Redis Cluster bus port (port + 10000) is free too: both in
// 20000-32767, below the kernel's default ephemeral range (32768-60999),
// so no outgoing connection takes one between this check and the server.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
)

func main() {
	n := flag.Int("n", 1, "how many ports")
	cluster := flag.Bool("cluster", false, "port+10000 free too (Redis Cluster bus)")
	flag.Parse()
	var held []net.Listener // kept open until all are chosen: distinct ports
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for i := 0; i < *n; i++ {
		p, err := pick(*cluster, &held)
		if err != nil {
			fmt.Fprintln(os.Stderr, "freeport:", err)
			os.Exit(1)
		}
		fmt.Println(p)
	}
}

func pick(cluster bool, held *[]net.Listener) (int, error) {
	if !cluster {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		*held = append(*held, l)
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	for try := 0; try < 1000; try++ {
		p := 20000 + rand.IntN(2768)
		a, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+10000))
		if err != nil {
			a.Close()
			continue
		}
		*held = append(*held, a, b)
		return p, nil
	}
	return 0, fmt.Errorf("no free port pair (p, p+10000) in 20000-32767")
}
