{
  "targets": [
    {
      "target_name": "twinblade_native",
      "sources": ["src/addon.cc", "src/crc32c.cc", "src/xor.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lutil"]
    }
  ]
}
