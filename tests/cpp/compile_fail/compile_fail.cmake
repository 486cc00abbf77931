# Compiles compile_fail/snippets.cpp once per case: case 0 must compile, every other case
# must fail, with a diagnostic matching its pattern below (GCC and Clang words), so that a
# case cannot pass by failing for an unrelated reason. Prints "N passed, M failed".
#   cmake -DCOMPILER=... -DFLAGS="..." -DINCLUDE=... -DSOURCE=... -P compile_fail.cmake
separate_arguments(flag_list UNIX_COMMAND "${FLAGS}")
set(pattern_1 "no matching")                                   # const container as output
set(pattern_2 "no matching")                                   # ConstView as output
set(pattern_3 "const float|no matching constructor")          # View of const data
set(pattern_4 "tau")                                           # softmax option on a Gaussian config
set(pattern_5 "differ in element type")                        # float in, double out
set(pattern_6 "ignoring return value")                         # [[nodiscard]]
set(pattern_7 "operator=|overloaded '='")                      # const buffer as token output
set(pattern_8 "int32 or int64")                                # float labels
set(CASES 8)
set(passed 0)
set(failed 0)
foreach(case RANGE 0 ${CASES})
    execute_process(
        COMMAND "${COMPILER}" ${flag_list} "-I${INCLUDE}" -DERA_CASE=${case} -fsyntax-only "${SOURCE}"
        RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)
    if(case EQUAL 0)
        set(ok NO)
        if(result EQUAL 0)
            set(ok YES)
        endif()
        set(want "compile")
    else()
        set(ok NO)
        if(NOT result EQUAL 0 AND output MATCHES "${pattern_${case}}")
            set(ok YES)
        endif()
        set(want "fail to compile with a diagnostic matching '${pattern_${case}}'")
    endif()
    if(ok)
        math(EXPR passed "${passed} + 1")
    else()
        math(EXPR failed "${failed} + 1")
        message("FAIL: case ${case} should ${want}:\n${output}")
    endif()
endforeach()
message("${passed} passed, ${failed} failed")
if(failed GREATER 0)
    message(FATAL_ERROR "compile-fail checks failed")
endif()
