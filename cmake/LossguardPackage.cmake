# The server's Debian package (CPack): `cpack -G DEB` in the build directory writes
# lossguard-server_VERSION_ARCH.deb with the server, the CLI, the web dashboard and a systemd unit
# that runs the server as its own user with the database under /var/lib/lossguard. Only the
# `server` install component goes in; the collector's developer files (headers, static libraries,
# CMake package) are installed by `cmake --install` alone.
set(LOSSGUARD_PACKAGE_PREFIX /usr)
set(LOSSGUARD_UNIT_BINDIR ${LOSSGUARD_PACKAGE_PREFIX}/${CMAKE_INSTALL_BINDIR})
configure_file(${PROJECT_SOURCE_DIR}/packaging/lossguard-server.service.in
               ${PROJECT_BINARY_DIR}/packaging/lossguard-server.service @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/packaging/lossguard-server.service
        DESTINATION lib/systemd/system COMPONENT server)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME lossguard)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "lossguard")
set(CPACK_PACKAGE_CONTACT "lossguard maintainers <maintainers@lossguard.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "training-loss sanity monitoring: server, CLI and dashboard")
set(CPACK_PACKAGING_INSTALL_PREFIX ${LOSSGUARD_PACKAGE_PREFIX})
# The binaries without their debug sections: a 50 MB package becomes a few MB.
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL server)
set(CPACK_DEBIAN_SERVER_PACKAGE_NAME lossguard-server)
set(CPACK_DEBIAN_SERVER_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_SERVER_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_SERVER_DESCRIPTION
    "Training-loss sanity monitoring server\n lossguard-server stores per-step training records, \
finds mis-normalised losses, gradient explosions and non-finite values, and answers REST queries \
and Prometheus scrapes. With the lossguard CLI and the built-in web dashboard.")
# The shared libraries the binaries link (SQLite, libpq, OpenSSL, prometheus-cpp, spdlog, fmt),
# found by dpkg-shlibdeps; adduser for the service's user.
set(CPACK_DEBIAN_SERVER_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_SERVER_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_SERVER_PACKAGE_CONTROL_EXTRA
    "${PROJECT_SOURCE_DIR}/packaging/postinst;${PROJECT_SOURCE_DIR}/packaging/prerm;${PROJECT_SOURCE_DIR}/packaging/postrm")
set(CPACK_DEBIAN_SERVER_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
