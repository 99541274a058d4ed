# Stand-in for the SDK's include/package.mk. BuildPackage adds two targets:
#   print-vars     the package's version, DEPENDS, USERID, features, conffiles, compile command
#   install-to     runs Package/<name>/install into $(ROOT)
# VERSION is joined as include/package-defaults.mk of OpenWrt 24.10 and later
# does it (PKG_VERSION-rPKG_RELEASE, for opkg and apk alike).
define BuildPackage
$$(eval $$(Package/$(1)))
print-vars:
	@echo 'PKG_VERSION=$$(PKG_VERSION)'
	@echo 'PKG_RELEASE=$$(PKG_RELEASE)'
	@echo 'VERSION=$$(if $$(PKG_RELEASE),$$(PKG_VERSION)-r$$(PKG_RELEASE),$$(PKG_VERSION))'
	@echo 'DEPENDS=$$(strip $$(DEPENDS))'
	@echo 'USERID=$$(strip $$(USERID))'
	@echo 'SECTION=$$(SECTION) CATEGORY=$$(CATEGORY)'
	@echo 'RUST_PKG_FEATURES=$$(RUST_PKG_FEATURES)'
	@echo 'CONFFILES=$$(strip $$(Package/$(1)/conffiles))'
	@echo 'COMPILE=$$(strip $$(Build/Compile))'
	@echo 'CARGO_PKG_VARS=$$(strip $$(CARGO_PKG_VARS))'
	@echo 'CONFIG_MENU=$$(if $$(Package/$(1)/config),yes,no)'
install-to:
	$$(call Package/$(1)/install,$$(ROOT))
endef
