// A hidden, always-zero definition of glibc's __libc_single_threaded for _cpu_ops.so.
//
// libstdc++'s headers (GCC 11 and later, on glibc 2.32 and later) read this glibc variable
// in their inline reference counting (std::shared_ptr's use counts, for one) to skip
// atomic instructions in single-threaded processes; the module would then import it from
// libc.so.6 at version GLIBC_2.32, above the manylinux_2_28 floor of era_torch's wheel. With
// this definition (hidden, so it binds inside the module and is not exported) the headers
// read 0, "not known to be single-threaded", and always take the atomic path: correct in
// every process, and the module needs no glibc newer than 2.28 (`auditwheel show`).
extern "C" {
__attribute__((visibility("hidden"))) char __libc_single_threaded = 0;
}
