function __data-mesher_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __data-mesher_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __data-mesher_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __data-mesher_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __data-mesher_parse_tokens -S
    set -l unparsed_tokens (__data-mesher_tokens -pc)
    switch $unparsed_tokens[1]
    case 'data-mesher'
        __data-mesher_parse_subcommand 0 'version' 'h/help'
        switch $unparsed_tokens[1]
        case 'server'
            __data-mesher_parse_subcommand 0 'config=' 'check-config' 'version' 'h/help'
        case 'file'
            __data-mesher_parse_subcommand 0 'version' 'h/help'
            switch $unparsed_tokens[1]
            case 'update'
                __data-mesher_parse_subcommand 1 'url=' 'key=' 'network-id=' 'name=' 'valid-for=' 'wait=' 'timeout=' 'version' 'h/help'
            case 'delete'
                __data-mesher_parse_subcommand 1 'url=' 'key=' 'network-id=' 'version' 'h/help'
            case 'list'
                __data-mesher_parse_subcommand 0 'url=' 'json' 'version' 'h/help'
            case 'get'
                __data-mesher_parse_subcommand 1 'url=' 'output=' 'version' 'h/help'
            case 'status'
                __data-mesher_parse_subcommand 1 'url=' 'json' 'version' 'h/help'
            case 'watch'
                __data-mesher_parse_subcommand -r 1 'url=' 'exec=' 'debounce=' 'initial' 'json' 'version' 'h/help'
            end
        case 'members'
            __data-mesher_parse_subcommand 0 'url=' 'json' 'version' 'h/help'
        case 'generate'
            __data-mesher_parse_subcommand 0 'version' 'h/help'
            switch $unparsed_tokens[1]
            case 'keypair'
                __data-mesher_parse_subcommand 0 'private-key-path=' 'public-key-path=' 'force' 'version' 'h/help'
            case 'signing-key'
                __data-mesher_parse_subcommand 0 'private-key-path=' 'public-key-path=' 'force' 'version' 'h/help'
            case 'keyring-key'
                __data-mesher_parse_subcommand 0 'output=' 'force' 'version' 'h/help'
            case 'ca'
                __data-mesher_parse_subcommand 0 'private-key-path=' 'public-key-path=' 'force' 'version' 'h/help'
            case 'node-key'
                __data-mesher_parse_subcommand 0 'private-key-path=' 'public-key-path=' 'force' 'version' 'h/help'
            end
        case 'key'
            __data-mesher_parse_subcommand 0 'version' 'h/help'
            switch $unparsed_tokens[1]
            case 'public'
                __data-mesher_parse_subcommand 1 'version' 'h/help'
            end
        case 'certificate'
            __data-mesher_parse_subcommand 0 'version' 'h/help'
            switch $unparsed_tokens[1]
            case 'sign'
                __data-mesher_parse_subcommand 0 'ca-key=' 'node-key=' 'output=' 'name=' 'validity=' 'force' 'version' 'h/help'
            case 'verify'
                __data-mesher_parse_subcommand 1 'ca=+' 'version' 'h/help'
            end
        case 'help'
            __data-mesher_parse_subcommand -r 1 'version'
        end
    end
end

function __data-mesher_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __data-mesher_parse_subcommand -S -a positional_count
    argparse -s r -- $argv
    set -l option_specs $argv[2..]
    set -l is_repeating_positional $_flag_r
    set -el _flag_r
    set -a commands $unparsed_tokens[1]
    set positional_index 0
    while true
        set -e unparsed_tokens[1]
        argparse -sn "$commands" $option_specs -- $unparsed_tokens 2> /dev/null
        set unparsed_tokens $argv
        set positional_index (math $positional_index + 1)
        for non_repeating_flag_or_option in $non_repeating_flags_or_options
            if set -ql "_flag_$(string replace -a - _ -- $non_repeating_flag_or_option)"
                set non_repeating_flags_or_options_absent 1
                break
            end
        end
        test (count $unparsed_tokens) -eq 0 -o \( -z "$is_repeating_positional" -a "$positional_index" -gt "$positional_count" \) && break
    end
end

function __data-mesher_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __data-mesher_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__data-mesher_tokens -p)
    if test -z "$(__data-mesher_tokens -t)"
        set -l index (count (__data-mesher_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'data-mesher' -f
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher" -eq 1' -fa 'server' -d 'Run the data-mesher daemon.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher" -eq 1' -fa 'file' -d 'Upload, delete, list and fetch signed files.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher" -eq 1' -fa 'members' -d 'List the members of the cluster as a node sees them.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher" -eq 1' -fa 'generate' -d 'Generate signing keys, the cluster keyring key, and the CA and node identity keys.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher" -eq 1' -fa 'key' -d 'Inspect keys (make one with `data-mesher generate keypair`).'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher" -eq 1' -fa 'certificate' -d 'Issue and check node identity certificates (X.509, signed by a CA key).'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher" -eq 1' -fa 'help' -d 'Show subcommand help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher server" config' -l 'config' -d 'Path of the configuration file.' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher server" check-config' -l 'check-config' -d 'Check the configuration and the files it names, print what would be bound and joined, and exit.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher server" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher server" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher file" -eq 1' -fa 'update' -d 'Sign a file and upload it as the newest version of NAME.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher file" -eq 1' -fa 'delete' -d 'Delete NAME everywhere with a signed tombstone.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher file" -eq 1' -fa 'list' -d 'List the files a node holds.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher file" -eq 1' -fa 'get' -d 'Fetch the content of NAME (to stdout, or to --output).'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher file" -eq 1' -fa 'status' -d 'Show which version of NAME each member holds.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher file" -eq 1' -fa 'watch' -d 'Follow changes of files on a node; optionally run a command after each change.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file update" url' -l 'url' -d 'The node\'s HTTP API.' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file update" key key-path' -l 'key' -l 'key-path' -d 'Private signing key (PKCS#8 PEM).' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file update" network-id' -l 'network-id' -d 'Network ID signed into the file (default: the node\'s own).' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file update" name' -l 'name' -d 'The name to store it under (default: the file\'s base name).' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file update" valid-for' -l 'valid-for' -d 'How long the version is valid, e.g. 10m or 24h (default: forever).' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file update" wait' -l 'wait' -d 'Wait until the version is held by every live member configured for the name (all), or by N members; stops at once, saying why, when members that refuse it leave too few.' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file update" timeout' -l 'timeout' -d 'How long --wait waits, e.g. 30s.' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file update" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file update" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file delete" url' -l 'url' -d 'The node\'s HTTP API.' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file delete" key key-path' -l 'key' -l 'key-path' -d 'Private signing key (PKCS#8 PEM).' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file delete" network-id' -l 'network-id' -d 'Network ID signed into the file (default: the node\'s own).' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file delete" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file delete" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file list" url' -l 'url' -d 'The node\'s HTTP API.' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file list" json' -l 'json' -d 'Print the JSON the API returns.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file list" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file list" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file get" url' -l 'url' -d 'The node\'s HTTP API.' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file get" output' -l 'output' -d 'Write the content here (atomically) instead of to stdout.' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file get" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file get" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file status" url' -l 'url' -d 'The node\'s HTTP API.' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file status" json' -l 'json' -d 'Print the JSON the API returns.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file status" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file status" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file watch" url' -l 'url' -d 'The node\'s HTTP API.' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file watch" exec' -l 'exec' -d 'A shell command to run after changes.' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file watch" debounce' -l 'debounce' -d 'Wait this long after a change for more before running the command.' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file watch" initial' -l 'initial' -d 'Run the command once at start when a watched file is present.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file watch" json' -l 'json' -d 'Print each change as the event\'s JSON.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file watch" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher file watch" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher members" url' -l 'url' -d 'The node\'s HTTP API.' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher members" json' -l 'json' -d 'Print the JSON the API returns.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher members" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher members" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher generate" -eq 1' -fa 'keypair' -d 'Generate an ED25519 signing key pair; prints the public key for [files].'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher generate" -eq 1' -fa 'signing-key' -d 'Same as `generate keypair`.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher generate" -eq 1' -fa 'keyring-key' -d 'Generate a pre-shared cluster key for `[cluster.encryption] keyring` (base64 of 32 random bytes).'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher generate" -eq 1' -fa 'ca' -d 'Generate the ED25519 key pair of a certificate authority for node identities.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher generate" -eq 1' -fa 'node-key' -d 'Generate a node\'s ED25519 identity key pair (`identity_key`; sign its public key with the CA).'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate keypair" private-key-path' -l 'private-key-path' -d 'Where to write the private key (PKCS#8 PEM, mode 0600).' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate keypair" public-key-path' -l 'public-key-path' -d 'Where to write the public key (SPKI PEM).' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate keypair" force' -l 'force' -d 'Replace existing key files.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate keypair" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate keypair" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate signing-key" private-key-path' -l 'private-key-path' -d 'Where to write the private key (PKCS#8 PEM, mode 0600).' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate signing-key" public-key-path' -l 'public-key-path' -d 'Where to write the public key (SPKI PEM).' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate signing-key" force' -l 'force' -d 'Replace existing key files.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate signing-key" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate signing-key" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate keyring-key" output' -l 'output' -d 'Where to write the key.' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate keyring-key" force' -l 'force' -d 'Replace an existing file.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate keyring-key" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate keyring-key" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate ca" private-key-path' -l 'private-key-path' -d 'Where to write the private key (PKCS#8 PEM, mode 0600).' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate ca" public-key-path' -l 'public-key-path' -d 'Where to write the public key (SPKI PEM).' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate ca" force' -l 'force' -d 'Replace existing key files.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate ca" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate ca" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate node-key" private-key-path' -l 'private-key-path' -d 'Where to write the private key (PKCS#8 PEM, mode 0600).' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate node-key" public-key-path' -l 'public-key-path' -d 'Where to write the public key (SPKI PEM).' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate node-key" force' -l 'force' -d 'Replace existing key files.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate node-key" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher generate node-key" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher key" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher key" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher key" -eq 1' -fa 'public' -d 'Print the base64 public key (for [files]) of a private or public PEM key file.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher key public" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher key public" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher certificate" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher certificate" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher certificate" -eq 1' -fa 'sign' -d 'Sign a node\'s public key with the CA key, writing an X.509 certificate (PEM).'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_positional "data-mesher certificate" -eq 1' -fa 'verify' -d 'Check that a certificate is signed by the CA and valid now; prints its subject and validity.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher certificate sign" ca-key' -l 'ca-key' -d 'The CA\'s private key (PKCS#8 PEM, from `generate ca`).' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher certificate sign" node-key' -l 'node-key' -d 'The node\'s public (or private) identity key (PEM, from `generate node-key`).' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher certificate sign" output' -l 'output' -d 'Where to write the certificate.' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher certificate sign" name' -l 'name' -d 'The node name in the certificate (default: the node key file\'s name without extension).' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher certificate sign" validity' -l 'validity' -d 'How long the certificate is valid, e.g. 2160h (90 days) or 30m.' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher certificate sign" force' -l 'force' -d 'Replace an existing certificate file.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher certificate sign" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher certificate sign" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher certificate verify"' -l 'ca' -d 'The CA\'s public key (SPKI PEM); may be given more than once.' -rfka ''
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher certificate verify" version' -l 'version' -d 'Show the version.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher certificate verify" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'data-mesher' -n '__data-mesher_should_offer_completions_for_flags_or_options "data-mesher help" version' -l 'version' -d 'Show the version.'
