# lossguard_warnings(target): the warning set for lossguard's own targets only; third-party headers
# are included as SYSTEM by their imported targets, so -Werror never trips on them.
function(lossguard_warnings target)
  # -Wno-missing-field-initializers: GCC 12 flags designated initializers such as
  # Options{.db = path} that rely on default member initializers, which is the idiom we want.
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wnon-virtual-dtor
                                           -Wno-missing-field-initializers)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(${target} PRIVATE -Wshadow=local)  # clang spells it -Wshadow
  endif()
  if(LOSSGUARD_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
