# lossguard_warnings(target): the warning set for lossguard's own targets only; third-party headers
# are included as SYSTEM by their imported targets, so -Werror never trips on them.
function(lossguard_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow=local -Wnon-virtual-dtor)
  if(LOSSGUARD_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
