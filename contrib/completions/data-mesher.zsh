#compdef data-mesher

__data-mesher_complete() {
    local -ar non_empty_completions=("${@:#(|:*)}")
    local -ar empty_completions=("${(M)@:#(|:*)}")
    _describe -V '' non_empty_completions -- empty_completions -P $'\'\''
}

__data-mesher_custom_complete() {
    local -a completions
    completions=("${(@f)"$("${command_name}" "${@}" "${command_line[@]}")"}")
    if [[ "${#completions[@]}" -gt 1 ]]; then
        __data-mesher_complete "${completions[@]:0:-1}"
    fi
}

__data-mesher_cursor_index_in_current_word() {
    if [[ -z "${QIPREFIX}${IPREFIX}${PREFIX}" ]]; then
        printf 0
    else
        printf %s "${#${(z)LBUFFER}[-1]}"
    fi
}

_data-mesher() {
    emulate -RL zsh -G
    setopt extendedglob nullglob numericglobsort
    unsetopt aliases banghist

    local -xr SAP_SHELL=zsh
    local -x SAP_SHELL_VERSION
    SAP_SHELL_VERSION="$(builtin emulate zsh -c 'printf %s "${ZSH_VERSION}"')"
    local -r SAP_SHELL_VERSION

    local context state state_descr line
    local -A opt_args

    local -r command_name="${words[1]}"
    local -ar command_line=("${words[@]}")
    local -ir current_word_index="$((CURRENT - 1))"

    local -i ret=1
    local -ar arg_specs=(
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
        '(-): :->command'
        '(-)*:: :->arg'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0
    case "${state}" in
    command)
        local -ar subcommands=(
            'server:Run the data-mesher daemon.'
            'file:Upload, delete, list and fetch signed files.'
            'members:List the members of the cluster as a node sees them.'
            'generate:Generate signing keys, the cluster keyring key, and the CA and node identity keys.'
            'key:Inspect keys (make one with `data-mesher generate keypair`).'
            'certificate:Issue and check node identity certificates (X.509, signed by a CA key).'
            'help:Show subcommand help information.'
        )
        _describe -V subcommand subcommands && ret=0
        ;;
    arg)
        case "${words[1]}" in
        server|file|members|generate|key|certificate|help)
            "_data-mesher_${words[1]}" && ret=0
            ;;
        esac
        ;;
    esac

    return "${ret}"
}

_data-mesher_server() {
    local -i ret=1
    local -ar arg_specs=(
        '--config[Path of the configuration file.]:config:'
        '--check-config[Check the configuration and the files it names, print what would be bound and joined, and exit.]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_data-mesher_file() {
    local -i ret=1
    local -ar arg_specs=(
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
        '(-): :->command'
        '(-)*:: :->arg'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0
    case "${state}" in
    command)
        local -ar subcommands=(
            'update:Sign a file and upload it as the newest version of NAME.'
            'delete:Delete NAME everywhere with a signed tombstone.'
            'list:List the files a node holds.'
            'get:Fetch the content of NAME (to stdout, or to --output).'
            'status:Show which version of NAME each member holds.'
            'watch:Follow changes of files on a node; optionally run a command after each change.'
        )
        _describe -V subcommand subcommands && ret=0
        ;;
    arg)
        case "${words[1]}" in
        update|delete|list|get|status|watch)
            "_data-mesher_file_${words[1]}" && ret=0
            ;;
        esac
        ;;
    esac

    return "${ret}"
}

_data-mesher_file_update() {
    local -i ret=1
    local -ar arg_specs=(
        ':path:'
        '--url[The node'\''s HTTP API.]:url:'
        '(--key --key-path)'{--key,--key-path}'[Private signing key (PKCS#8 PEM).]:key:'
        '--network-id[Network ID signed into the file (default\: the node'\''s own).]:network-id:'
        '--name[The name to store it under (default\: the file'\''s base name).]:name:'
        '--valid-for[How long the version is valid, e.g. 10m or 24h (default\: forever).]:valid-for:'
        '--wait[Wait until the version is held by every live member configured for the name (all), or by N members; stops at once, saying why, when members that refuse it leave too few.]:all|N:'
        '--timeout[How long --wait waits, e.g. 30s.]:timeout:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_data-mesher_file_delete() {
    local -i ret=1
    local -ar arg_specs=(
        ':name:'
        '--url[The node'\''s HTTP API.]:url:'
        '(--key --key-path)'{--key,--key-path}'[Private signing key (PKCS#8 PEM).]:key:'
        '--network-id[Network ID signed into the file (default\: the node'\''s own).]:network-id:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_data-mesher_file_list() {
    local -i ret=1
    local -ar arg_specs=(
        '--url[The node'\''s HTTP API.]:url:'
        '--json[Print the JSON the API returns.]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_data-mesher_file_get() {
    local -i ret=1
    local -ar arg_specs=(
        ':name:'
        '--url[The node'\''s HTTP API.]:url:'
        '--output[Write the content here (atomically) instead of to stdout.]:output:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_data-mesher_file_status() {
    local -i ret=1
    local -ar arg_specs=(
        ':name:'
        '--url[The node'\''s HTTP API.]:url:'
        '--json[Print the JSON the API returns.]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_data-mesher_file_watch() {
    local -i ret=1
    local -ar arg_specs=(
        '*:names:'
        '--url[The node'\''s HTTP API.]:url:'
        '--exec[A shell command to run after changes.]:exec:'
        '--debounce[Wait this long after a change for more before running the command.]:debounce:'
        '--initial[Run the command once at start when a watched file is present.]'
        '--json[Print each change as the event'\''s JSON.]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_data-mesher_members() {
    local -i ret=1
    local -ar arg_specs=(
        '--url[The node'\''s HTTP API.]:url:'
        '--json[Print the JSON the API returns.]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_data-mesher_generate() {
    local -i ret=1
    local -ar arg_specs=(
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
        '(-): :->command'
        '(-)*:: :->arg'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0
    case "${state}" in
    command)
        local -ar subcommands=(
            'keypair:Generate an ED25519 signing key pair; prints the public key for [files].'
            'signing-key:Same as `generate keypair`.'
            'keyring-key:Generate a pre-shared cluster key for `[cluster.encryption] keyring` (base64 of 32 random bytes).'
            'ca:Generate the ED25519 key pair of a certificate authority for node identities.'
            'node-key:Generate a node'\''s ED25519 identity key pair (`identity_key`; sign its public key with the CA).'
        )
        _describe -V subcommand subcommands && ret=0
        ;;
    arg)
        case "${words[1]}" in
        keypair|signing-key|keyring-key|ca|node-key)
            "_data-mesher_generate_${words[1]}" && ret=0
            ;;
        esac
        ;;
    esac

    return "${ret}"
}

_data-mesher_generate_keypair() {
    local -i ret=1
    local -ar arg_specs=(
        '--private-key-path[Where to write the private key (PKCS#8 PEM, mode 0600).]:private-key-path:'
        '--public-key-path[Where to write the public key (SPKI PEM).]:public-key-path:'
        '--force[Replace existing key files.]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_data-mesher_generate_signing-key() {
    local -i ret=1
    local -ar arg_specs=(
        '--private-key-path[Where to write the private key (PKCS#8 PEM, mode 0600).]:private-key-path:'
        '--public-key-path[Where to write the public key (SPKI PEM).]:public-key-path:'
        '--force[Replace existing key files.]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_data-mesher_generate_keyring-key() {
    local -i ret=1
    local -ar arg_specs=(
        '--output[Where to write the key.]:output:'
        '--force[Replace an existing file.]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_data-mesher_generate_ca() {
    local -i ret=1
    local -ar arg_specs=(
        '--private-key-path[Where to write the private key (PKCS#8 PEM, mode 0600).]:private-key-path:'
        '--public-key-path[Where to write the public key (SPKI PEM).]:public-key-path:'
        '--force[Replace existing key files.]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_data-mesher_generate_node-key() {
    local -i ret=1
    local -ar arg_specs=(
        '--private-key-path[Where to write the private key (PKCS#8 PEM, mode 0600).]:private-key-path:'
        '--public-key-path[Where to write the public key (SPKI PEM).]:public-key-path:'
        '--force[Replace existing key files.]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_data-mesher_key() {
    local -i ret=1
    local -ar arg_specs=(
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
        '(-): :->command'
        '(-)*:: :->arg'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0
    case "${state}" in
    command)
        local -ar subcommands=(
            'public:Print the base64 public key (for [files]) of a private or public PEM key file.'
        )
        _describe -V subcommand subcommands && ret=0
        ;;
    arg)
        case "${words[1]}" in
        public)
            "_data-mesher_key_${words[1]}" && ret=0
            ;;
        esac
        ;;
    esac

    return "${ret}"
}

_data-mesher_key_public() {
    local -i ret=1
    local -ar arg_specs=(
        ':key-file:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_data-mesher_certificate() {
    local -i ret=1
    local -ar arg_specs=(
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
        '(-): :->command'
        '(-)*:: :->arg'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0
    case "${state}" in
    command)
        local -ar subcommands=(
            'sign:Sign a node'\''s public key with the CA key, writing an X.509 certificate (PEM).'
            'verify:Check that a certificate is signed by the CA and valid now; prints its subject and validity.'
        )
        _describe -V subcommand subcommands && ret=0
        ;;
    arg)
        case "${words[1]}" in
        sign|verify)
            "_data-mesher_certificate_${words[1]}" && ret=0
            ;;
        esac
        ;;
    esac

    return "${ret}"
}

_data-mesher_certificate_sign() {
    local -i ret=1
    local -ar arg_specs=(
        '--ca-key[The CA'\''s private key (PKCS#8 PEM, from `generate ca`).]:ca-key:'
        '--node-key[The node'\''s public (or private) identity key (PEM, from `generate node-key`).]:node-key:'
        '--output[Where to write the certificate.]:output:'
        '--name[The node name in the certificate (default\: the node key file'\''s name without extension).]:name:'
        '--validity[How long the certificate is valid, e.g. 2160h (90 days) or 30m.]:validity:'
        '--force[Replace an existing certificate file.]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_data-mesher_certificate_verify() {
    local -i ret=1
    local -ar arg_specs=(
        '*--ca[The CA'\''s public key (SPKI PEM); may be given more than once.]:ca:'
        ':certificate:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_data-mesher_help() {
    local -i ret=1
    local -ar arg_specs=(
        '*:subcommands:'
        '--version[Show the version.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

if [[ "${funcstack[1]}" = _data-mesher ]]; then
    _data-mesher "${@}"
else
    compdef _data-mesher data-mesher
fi
