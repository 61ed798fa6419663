# Tools some tests need (promtool, node, chromium, a Python with certain modules) are optional at
# configure time: without them the build goes on, and each test that needs one is registered as a
# test that says what is missing and is reported by ctest as skipped (exit code 77), never as
# passed. scripts/setup.sh installs all of them.

# lossguard_skipped_test(NAME REASON LABEL): the stand-in for a test that cannot run here.
function(lossguard_skipped_test name reason label)
  add_test(NAME ${name} COMMAND sh -c "echo 'skipped ${name}: ${reason}' >&2; exit 77")
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77 LABELS ${label})
endfunction()

# lossguard_find_python(VAR MODULES m...): sets VAR to the first Python 3 interpreter that imports
# every module (the one given as -DLOSSGUARD_PYTHON=..., else python3 on PATH, else Debian's
# /usr/bin/python3: on some machines the first python3 on PATH lacks Debian's modules); VAR-NOTFOUND
# when none does. VAR_MISSING says what was tried.
function(lossguard_find_python var)
  cmake_parse_arguments(ARG "" "" "MODULES" ${ARGN})
  find_package(Python3 COMPONENTS Interpreter QUIET)
  set(candidates ${LOSSGUARD_PYTHON} ${Python3_EXECUTABLE} /usr/bin/python3)
  list(REMOVE_DUPLICATES candidates)
  set(imports "")
  foreach(module IN LISTS ARG_MODULES)
    string(APPEND imports "import ${module};")
  endforeach()
  foreach(python IN LISTS candidates)
    if(EXISTS ${python})
      execute_process(COMMAND ${python} -c "${imports}" RESULT_VARIABLE failed OUTPUT_QUIET ERROR_QUIET)
      if(NOT failed)
        set(${var} ${python} PARENT_SCOPE)
        return()
      endif()
    endif()
  endforeach()
  set(${var} ${var}-NOTFOUND PARENT_SCOPE)
  set(${var}_MISSING "no Python 3 among [${candidates}] imports ${ARG_MODULES}" PARENT_SCOPE)
endfunction()
