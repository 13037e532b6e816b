package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"
)

// Server timeouts. Bodies are at most 64 KB, so a slow client is cut off
// early rather than holding a connection.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 15 * time.Second
	WriteTimeout      = 15 * time.Second
	IdleTimeout       = 2 * time.Minute
	MaxHeaderBytes    = 16 << 10
)

// Server is a running listener.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	tls  bool
	done chan error
}

// TLSConfig is the server side: TLS 1.2 or later, Go's default (secure)
// cipher suites.
func TLSConfig(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("http.tls_cert/http.tls_key: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// Start listens on addr and serves h: HTTPS only when certFile and keyFile
// are set (then there is no plain HTTP on addr), else HTTP. Errors (address
// in use, unreadable certificate) are returned at once.
func Start(addr, certFile, keyFile string, h http.Handler, lg zerolog.Logger) (*Server, error) {
	var tc *tls.Config
	if certFile != "" || keyFile != "" {
		var err error
		if tc, err = TLSConfig(certFile, keyFile); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http.listen %s: %w", addr, err)
	}
	s := &Server{
		ln:  ln,
		tls: tc != nil,
		srv: &http.Server{
			Handler:           h,
			TLSConfig:         tc,
			ReadHeaderTimeout: ReadHeaderTimeout,
			ReadTimeout:       ReadTimeout,
			WriteTimeout:      WriteTimeout,
			IdleTimeout:       IdleTimeout,
			MaxHeaderBytes:    MaxHeaderBytes,
			ErrorLog:          log.New(lg.With().Str("component", "http").Logger(), "", 0),
		},
		done: make(chan error, 1),
	}
	go func() {
		var err error
		if s.tls {
			err = s.srv.ServeTLS(ln, "", "")
		} else {
			err = s.srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Addr is the address listened on (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// TLS reports whether the server speaks HTTPS.
func (s *Server) TLS() bool { return s.tls }

// Shutdown stops accepting, lets requests in progress finish until ctx ends,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	if serr := <-s.done; err == nil {
		err = serr
	}
	return err
}
