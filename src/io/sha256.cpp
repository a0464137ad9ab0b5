#include "io/sha256.hpp"

#include <eplb/errors.hpp>

#include <openssl/evp.h>

#include <array>

namespace eplb::io {

std::string sha256_hex(const void* data, std::size_t size) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int length = 0;
    if (EVP_Digest(data, size, digest.data(), &length, EVP_sha256(), nullptr) != 1)
        throw Error("SHA-256 computation failed (OpenSSL)");
    static const char* const hex = "0123456789abcdef";
    std::string out;
    out.reserve(2 * length);
    for (unsigned int i = 0; i < length; ++i) {
        out.push_back(hex[digest[i] >> 4]);
        out.push_back(hex[digest[i] & 15]);
    }
    return out;
}

}  // namespace eplb::io
