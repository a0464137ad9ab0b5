// SHA-256 digests (OpenSSL), as lower-case hex.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace eplb::io {

/// SHA-256 of `size` bytes at `data`, 64 lower-case hex digits.
std::string sha256_hex(const void* data, std::size_t size);

/// SHA-256 of a string's bytes.
inline std::string sha256_hex(std::string_view text) { return sha256_hex(text.data(), text.size()); }

}  // namespace eplb::io
