"""Keys of Odoo's `[options]` section that prefork does not use.

An existing odoo.conf must load, so these are accepted with one warning each; any key that is
neither here nor in the option table is an error.
"""

ODOO_ONLY_KEYS = frozenset(
    """
    addons_path bin_path csv_internal_sep
    db_replica_host db_replica_port db_template dbfilter
    demo dev_mode email_from from_filter geoip_city_db geoip_country_db geoip_database
    http_enable import_partial list_db
    log_db log_db_level log_handler logrotate osv_memory_age_limit osv_memory_count_limit
    pg_path pre_upgrade_scripts publisher_warranty_url reportgz root_path screencasts
    screenshots server_wide_modules smtp_password smtp_port smtp_server smtp_ssl
    smtp_ssl_certificate_filename smtp_ssl_private_key_filename smtp_user syslog test_commit
    test_enable test_file test_tags transient_age_limit translate_modules unaccent
    upgrade_path websocket_keep_alive_timeout
    without_demo x_sendfile xmlrpc xmlrpc_interface xmlrpc_port
    xmlrpcs xmlrpcs_interface xmlrpcs_port netrpc netrpc_interface netrpc_port
    """.split()
)
