{
  "targets": [
    {
      "target_name": "weft_socket",
      "sources": ["weft-socket.c", "weft-copy.c", "weft-io.c", "weft-io-engine.c", "weft-io-parts.c", "weft-fdpass.c", "weft-netns.c", "weft-tls.c", "weft-tls-context.c", "weft-h2.c", "weft-h2-napi.c", "weft-memory.cc"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
