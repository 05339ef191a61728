# Install layout of the Debian packages (deploy/debian/ turns `cmake --install` of a build
# tree into sluice-agent, sluice-mux, sluice-snatd and sluicectl). Included from the top CMakeLists.txt after
# every directory, so the targets exist. `ninja deb` builds the .debs into <build>/deb/.
include(GNUInstallDirs)

# Debian 12 (bookworm) packages still ship units in /lib; usrmerge makes both paths work.
set(SLUICE_SYSTEMD_UNIT_DIR /lib/systemd/system)

install(TARGETS sluice-agent RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR} COMPONENT agent)
install(TARGETS sluice-mux RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR} COMPONENT mux)
install(TARGETS sluicectl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT sluicectl)
install(TARGETS sluice-snatd RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR} COMPONENT snatd)

set(_deploy ${PROJECT_SOURCE_DIR}/deploy)
install(FILES ${_deploy}/config/agent.yaml DESTINATION /etc/sluice COMPONENT agent)
install(FILES ${_deploy}/config/mux.yaml DESTINATION /etc/sluice COMPONENT mux)
install(FILES ${_deploy}/config/default/sluice-agent DESTINATION /etc/default COMPONENT agent)
install(FILES ${_deploy}/config/default/sluice-mux DESTINATION /etc/default COMPONENT mux)
install(FILES ${_deploy}/config/snatd.yaml DESTINATION /etc/sluice COMPONENT snatd)
install(FILES ${_deploy}/config/default/sluice-snatd DESTINATION /etc/default COMPONENT snatd)
install(FILES ${_deploy}/systemd/sluice-snatd.service
  DESTINATION ${SLUICE_SYSTEMD_UNIT_DIR} COMPONENT snatd)
# controller/README.md (the allocator's behaviour) is the unit's Documentation=.
install(FILES ${PROJECT_SOURCE_DIR}/controller/README.md
  DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/sluice-snatd COMPONENT snatd)
install(FILES ${_deploy}/systemd/sluice-agent.service
  DESTINATION ${SLUICE_SYSTEMD_UNIT_DIR} COMPONENT agent)
install(FILES ${_deploy}/systemd/sluice-mux.service
  DESTINATION ${SLUICE_SYSTEMD_UNIT_DIR} COMPONENT mux)
install(FILES ${_deploy}/systemd/vswitch.conf
  DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/sluice-agent/examples COMPONENT agent)
# deploy/INSTALL.md as setup.md (the units' Documentation=; left uncompressed by debian/rules).
install(FILES ${_deploy}/INSTALL.md DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/sluice-agent
  RENAME setup.md COMPONENT agent)
install(FILES ${_deploy}/INSTALL.md DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/sluice-mux
  RENAME setup.md COMPONENT mux)

# The libvirt hook (deploy/libvirt/) when it is built. libvirt runs every executable in
# qemu.d; a symlink (not a conffile) means removing the package also removes the hook, so
# libvirt never calls a hook whose binary is gone (a failing `started` hook stops VMs).
if(TARGET sluice-libvirt-hook)
  install(TARGETS sluice-libvirt-hook RUNTIME DESTINATION ${CMAKE_INSTALL_LIBEXECDIR}/sluice
    COMPONENT agent)
  install(FILES ${_deploy}/libvirt/libvirt-hook.yaml DESTINATION /etc/sluice COMPONENT agent)
  install(CODE "
    file(MAKE_DIRECTORY \"\$ENV{DESTDIR}/etc/libvirt/hooks/qemu.d\")
    file(CREATE_LINK \${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBEXECDIR}/sluice/sluice-libvirt-hook
         \"\$ENV{DESTDIR}/etc/libvirt/hooks/qemu.d/sluice\" SYMBOLIC)" COMPONENT agent)
endif()

set(_deb_targets sluice-agent sluice-mux sluice-snatd sluicectl)
if(TARGET sluice-libvirt-hook)
  list(APPEND _deb_targets sluice-libvirt-hook)
endif()
add_custom_target(deb
  COMMAND ${_deploy}/debian/build-debs.sh ${PROJECT_BINARY_DIR} ${PROJECT_BINARY_DIR}/deb
  DEPENDS ${_deb_targets}
  COMMENT "Debian packages from this build tree into ${PROJECT_BINARY_DIR}/deb"
  USES_TERMINAL)
