// Package api is Trellis's HTTP surface: routing, caller authentication,
// JSON decoding, problem+json errors and the OpenAPI document. It holds no
// business rules: handlers decode, call a service or the engine, and encode.
//
// It may import every service package; nothing imports api except cmd.
package api
