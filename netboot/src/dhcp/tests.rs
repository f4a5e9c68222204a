//! Scenario tests of the DHCP core on virtual time.
