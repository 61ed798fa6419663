# lossguard_library(NAME SOURCES src... [LINK libs...]): one of lossguard's public libraries, as
# target lossguard_NAME with alias lossguard::NAME (and export name NAME): its headers under
# include/ (installed as such), C++20 as a usage requirement, the project's warnings. LINK libraries
# are public (their headers appear in ours). Position-independent, so that a shared object can link
# them: the Python package's extension module does, and so may a consumer of the installed package.
function(lossguard_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LINK" ${ARGN})
  add_library(lossguard_${name} ${ARG_SOURCES})
  add_library(lossguard::${name} ALIAS lossguard_${name})
  target_include_directories(lossguard_${name} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:include>)
  target_link_libraries(lossguard_${name} PUBLIC ${ARG_LINK})
  target_compile_features(lossguard_${name} PUBLIC cxx_std_20)
  set_target_properties(lossguard_${name} PROPERTIES EXPORT_NAME ${name} POSITION_INDEPENDENT_CODE ON)
  lossguard_warnings(lossguard_${name})
endfunction()
