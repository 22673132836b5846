{
  "targets": [
    {
      "target_name": "weft_socket",
      "sources": ["weft-socket.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
