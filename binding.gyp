{
  "targets": [
    {
      "target_name": "tsnet_native",
      "sources": ["native/src/addon.cc", "native/src/netns.cc", "native/src/netlink_socket.cc", "native/src/netlink_lane.cc", "native/src/netlink_watch.cc", "native/src/udp_responder.cc", "native/src/socket_reader.cc", "native/src/port_relay.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "tsnet-cni-shim",
      "type": "executable",
      "sources": ["native/src/cni_shim.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
