// Command ceiling is the HTTP ceiling of the check benchmarks as its own server:
// an echo handler answering POST /v1/check with a fixed {"allowed":true}, on the
// same stack (net/http, echo) as Trellis. benchmarks/load.sh drives it with the
// same load generator and requests as `trellis serve`.
//
//	go run ./benchmarks/ceiling -addr 127.0.0.1:18189
package main

import (
	"flag"
	"log"
	"net/http"

	"github.com/labstack/echo/v4"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18189", "listen address")
	flag.Parse()
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST("/v1/check", func(c echo.Context) error {
		return c.JSONBlob(http.StatusOK, []byte(`{"allowed":true}`))
	})
	e.GET("/readyz", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	log.Fatal(e.Start(*addr))
}
