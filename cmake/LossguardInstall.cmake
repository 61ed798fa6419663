# Install and export rules: find_package(lossguard) then target_link_libraries(... lossguard::X)
# with X one of base (Result/Status), wire (the codec), client (HTTP, spool, ingest), stream (RecordStream), analyzers
# (the detectors, pure logic), guard (verdicts into actions), and collector (LibTorch) when it is
# built.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(lossguard_exported lossguard_base lossguard_wire lossguard_client lossguard_stream lossguard_analyzers
                       lossguard_guard)
set(lossguard_header_dirs ${PROJECT_SOURCE_DIR}/base/include/ ${PROJECT_SOURCE_DIR}/wire/include/ ${PROJECT_SOURCE_DIR}/client/include/
                          ${PROJECT_SOURCE_DIR}/collector/include/ ${PROJECT_SOURCE_DIR}/analyzers/include/)
if(TARGET lossguard_collector)
  list(APPEND lossguard_exported lossguard_collector)
endif()
set(LOSSGUARD_PACKAGE_NEEDS_TORCH ${LOSSGUARD_BUILD_COLLECTOR})

install(TARGETS ${lossguard_exported} EXPORT lossguardTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY ${lossguard_header_dirs} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT lossguardTargets NAMESPACE lossguard:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/lossguard)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/lossguardConfig.cmake.in
  ${PROJECT_BINARY_DIR}/lossguardConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/lossguard)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/lossguardConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/lossguardConfig.cmake ${PROJECT_BINARY_DIR}/lossguardConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/lossguard)
