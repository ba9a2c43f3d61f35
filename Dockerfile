# syntax=docker/dockerfile:1
# Trellis: a static binary on a distroless base, run as a non-root user.
#   docker build -t trellis --build-arg VERSION=$(git describe --always) .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/trellis ./cmd/trellis

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/trellis /usr/local/bin/trellis
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/trellis"]
CMD ["serve", "--addr", "0.0.0.0:8080"]
