/* era/error.hpp: errors, the last-error message, versions and the ABI check.
 * A part of era.hpp: include <era.hpp>, which includes every part. */
#ifndef ERA_HPP_ERROR_HPP
#define ERA_HPP_ERROR_HPP

#include <era.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace era {

static_assert(sizeof(EraConfig) == ERA_CONFIG_SIZE, "era.hpp: EraConfig does not have the size era.h states");

/* ================================================================== errors */

/// Copies the message of the last failure on this thread (era_last_error); "" when none.
[[nodiscard]] inline std::string last_error() {
    std::size_t len = era_last_error(nullptr, 0);
    if (len == 0) {
        return std::string();
    }
    std::string buf(len + 1, '\0');
    len = era_last_error(&buf[0], buf.size());
    buf.resize(len < buf.size() ? len : buf.size() - 1);
    return buf;
}

/// The exception thrown for every failure, whether the C library or the wrapper found it.
/// what() is "ERA_STATUS_NAME: message".
class Error : public std::runtime_error {
public:
    /// An error with a status code (ERA_STATUS_*) and a message.
    Error(EraStatus status, const std::string& message)
        : std::runtime_error(std::string(era_status_str(status)) + ": " + message),
          status_(status), message_(message) {}

    /// The status code (ERA_STATUS_*).
    [[nodiscard]] EraStatus status() const noexcept { return status_; }
    /// The message, without the status name.
    [[nodiscard]] const std::string& message() const noexcept { return message_; }
    /// The static name of the status code, e.g. "ERA_STATUS_INVALID_SHAPE".
    [[nodiscard]] const char* status_name() const noexcept { return era_status_str(status_); }

private:
    EraStatus status_;
    std::string message_;
};

/// Throws era::Error with the thread's last-error message unless status is ERA_STATUS_OK.
inline void check(EraStatus status) {
    if (status != ERA_STATUS_OK) {
        throw Error(status, last_error());
    }
}

/* ================================================================== versions and ABI */

/// The library's version string, e.g. "0.1.0".
[[nodiscard]] inline std::string version() { return std::string(era_version()); }

/// The library's ABI version (era_abi_version()).
[[nodiscard]] inline std::uint32_t abi_version() noexcept { return era_abi_version(); }

/// Why the loaded library does not match this header ("" when it does): the ABI version,
/// sizeof(EraConfig) against era_config_size(), and the offset and size of every field
/// against era_config_field().
[[nodiscard]] inline std::string abi_mismatch() {
    if (era_abi_version() != ERA_ABI_VERSION) {
        return "the library has ABI version " + std::to_string(era_abi_version()) + ", era.h " +
               std::to_string(ERA_ABI_VERSION);
    }
    if (era_config_size() != sizeof(EraConfig)) {
        return "the library's EraConfig has " + std::to_string(era_config_size()) + " bytes, era.h's " +
               std::to_string(sizeof(EraConfig));
    }
    struct Field {
        const char* name;
        std::size_t offset, size;
    };
#define ERA_HPP_FIELD(f) Field{#f, offsetof(EraConfig, f), sizeof(EraConfig::f)}
    const Field fields[] = {
        ERA_HPP_FIELD(struct_size),  ERA_HPP_FIELD(kind),        ERA_HPP_FIELD(target_entropy),
        ERA_HPP_FIELD(dim),          ERA_HPP_FIELD(log_std_min), ERA_HPP_FIELD(log_std_max),
        ERA_HPP_FIELD(delta),        ERA_HPP_FIELD(delta_optimizer), ERA_HPP_FIELD(reserved0),
        ERA_HPP_FIELD(delta_lr),     ERA_HPP_FIELD(delta_beta1), ERA_HPP_FIELD(delta_beta2),
        ERA_HPP_FIELD(delta_eps),    ERA_HPP_FIELD(num_classes), ERA_HPP_FIELD(tau),
        ERA_HPP_FIELD(k),            ERA_HPP_FIELD(omega_low),   ERA_HPP_FIELD(omega_high),
        ERA_HPP_FIELD(top_fraction), ERA_HPP_FIELD(temperature), ERA_HPP_FIELD(advantage_scaling),
        ERA_HPP_FIELD(reserved1),    ERA_HPP_FIELD(vocab_topk),  ERA_HPP_FIELD(num_threads),
        ERA_HPP_FIELD(reserved2),
    };
#undef ERA_HPP_FIELD
    for (const Field& field : fields) {
        std::size_t offset = 0, size = 0;
        if (era_config_field(field.name, &offset, &size) != ERA_STATUS_OK) {
            return std::string("the library's EraConfig has no field ") + field.name;
        }
        if (offset != field.offset || size != field.size) {
            return std::string("EraConfig::") + field.name + " is at offset " + std::to_string(offset) +
                   " (" + std::to_string(size) + " bytes) in the library, " + std::to_string(field.offset) +
                   " (" + std::to_string(field.size) + " bytes) in era.h";
        }
    }
    return std::string();
}

/// True when the loaded library has this header's ABI version and EraConfig layout.
[[nodiscard]] inline bool abi_compatible() { return abi_mismatch().empty(); }

/// Throws era::Error (ERA_STATUS_INVALID_CONFIG) unless abi_compatible().
inline void check_abi() {
    std::string why = abi_mismatch();
    if (!why.empty()) {
        throw Error(ERA_STATUS_INVALID_CONFIG, "era.hpp: ABI mismatch: " + why);
    }
}

}  // namespace era

#endif  // ERA_HPP_ERROR_HPP
