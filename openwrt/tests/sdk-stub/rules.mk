# Stand-in for the OpenWrt SDK's rules.mk: only what openwrt/Makefile uses,
# so openwrt/test-ipk can evaluate the feed Makefile without an SDK.
INCLUDE_DIR:=$(TOPDIR)/include
STAGING_DIR:=/staging
PKG_BUILD_DIR:=/build/tinymta
PKG_INSTALL_DIR?=/build/tinymta/ipkg-install
INSTALL_DIR:=install -d -m0755
INSTALL_BIN:=install -m0755
INSTALL_CONF:=install -m0600
INSTALL_DATA:=install -m0644
CP:=cp -fpR
LN:=ln -sf
