# python_package_dir(PYTHON MODULE OUT): OUT = the directory of the Python package MODULE as
# PYTHON sees it (without importing it), or "" when PYTHON lacks it or cannot run.
function(python_package_dir python module out)
  set(_dir "")
  if(python)
    execute_process(
      COMMAND "${python}" -c
              "import importlib.util as u; s = u.find_spec('${module}'); print(s.submodule_search_locations[0] if s else '')"
      OUTPUT_VARIABLE _dir OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
      set(_dir "")
    endif()
  endif()
  set(${out} "${_dir}" PARENT_SCOPE)
endfunction()
