# FindMuJoCo.cmake: locates MuJoCo's C library and headers for examples/mpc.
#
# Looks, in order, at:
#   1. MuJoCo_ROOT (CMake or environment variable): a directory holding include/mujoco/mujoco.h
#      and the library, either in lib/ (an install, e.g. MuJoCo's release tarball) or beside
#      include/ (the layout of the Python wheel's package directory, site-packages/mujoco);
#   2. the `mujoco` Python package of MuJoCo_PYTHON (default: the first python3 on PATH): since
#      MuJoCo 4 the `mujoco-core` wheel ships libmujoco.so.<version> and include/mujoco/ in
#      site-packages/mujoco (the `mujoco` wheel depends on it);
#   3. the system (Debian's libmujoco-dev: /usr/include/mujoco, libmujoco.so).
#
# Defines MuJoCo_FOUND, MuJoCo_VERSION, MuJoCo_INCLUDE_DIR, MuJoCo_LIBRARY and the imported
# target MuJoCo::MuJoCo. MuJoCo_ROOT and MuJoCo_PYTHON may name another place or interpreter.

set(_mujoco_hints "")
if(MuJoCo_ROOT)
  list(APPEND _mujoco_hints "${MuJoCo_ROOT}")
elseif(DEFINED ENV{MuJoCo_ROOT})
  list(APPEND _mujoco_hints "$ENV{MuJoCo_ROOT}")
endif()

include("${CMAKE_CURRENT_LIST_DIR}/PythonPackageDir.cmake")
if(NOT _mujoco_hints)
  if(NOT MuJoCo_PYTHON)
    find_program(MuJoCo_PYTHON NAMES python3 python)
  endif()
  python_package_dir("${MuJoCo_PYTHON}" mujoco _mujoco_package)
  if(_mujoco_package)
    list(APPEND _mujoco_hints "${_mujoco_package}")
  endif()
endif()

if(_mujoco_hints)
  find_path(MuJoCo_INCLUDE_DIR mujoco/mujoco.h PATHS ${_mujoco_hints} PATH_SUFFIXES include NO_DEFAULT_PATH)
  # The wheel's library carries its version in the file name (libmujoco.so.4.0.0) and has no
  # unversioned link, so glob for it as well.
  find_library(MuJoCo_LIBRARY NAMES mujoco PATHS ${_mujoco_hints} PATH_SUFFIXES lib lib64 NO_DEFAULT_PATH)
  if(NOT MuJoCo_LIBRARY)
    foreach(_hint IN LISTS _mujoco_hints)
      file(GLOB _mujoco_candidates "${_hint}/libmujoco.so.*" "${_hint}/lib/libmujoco.so.*" "${_hint}/libmujoco.*.dylib")
      if(_mujoco_candidates)
        list(SORT _mujoco_candidates)
        list(GET _mujoco_candidates -1 _mujoco_library)
        set(MuJoCo_LIBRARY "${_mujoco_library}" CACHE FILEPATH "MuJoCo library" FORCE)
        break()
      endif()
    endforeach()
  endif()
else()
  find_path(MuJoCo_INCLUDE_DIR mujoco/mujoco.h)
  find_library(MuJoCo_LIBRARY NAMES mujoco)
endif()

if(MuJoCo_INCLUDE_DIR AND EXISTS "${MuJoCo_INCLUDE_DIR}/mujoco/mujoco.h")
  file(STRINGS "${MuJoCo_INCLUDE_DIR}/mujoco/mujoco.h" _mujoco_line REGEX "^#define mjVERSION_HEADER [0-9]+")
  string(REGEX REPLACE ".* ([0-9]+).*" "\\1" _mujoco_v "${_mujoco_line}")
  if(_mujoco_v GREATER_EQUAL 1000000)  # 4.0.0 -> 4000000
    math(EXPR _major "${_mujoco_v} / 1000000")
    math(EXPR _minor "(${_mujoco_v} / 1000) % 1000")
    math(EXPR _patch "${_mujoco_v} % 1000")
  else()  # 3.2.1 -> 321
    math(EXPR _major "${_mujoco_v} / 100")
    math(EXPR _minor "(${_mujoco_v} / 10) % 10")
    math(EXPR _patch "${_mujoco_v} % 10")
  endif()
  set(MuJoCo_VERSION "${_major}.${_minor}.${_patch}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(MuJoCo REQUIRED_VARS MuJoCo_LIBRARY MuJoCo_INCLUDE_DIR VERSION_VAR MuJoCo_VERSION)

if(MuJoCo_FOUND AND NOT TARGET MuJoCo::MuJoCo)
  add_library(MuJoCo::MuJoCo SHARED IMPORTED)
  set_target_properties(MuJoCo::MuJoCo PROPERTIES
    IMPORTED_LOCATION "${MuJoCo_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${MuJoCo_INCLUDE_DIR}")
endif()
mark_as_advanced(MuJoCo_INCLUDE_DIR MuJoCo_LIBRARY)
