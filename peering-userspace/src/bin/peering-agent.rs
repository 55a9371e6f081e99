fn main() {
    println!("{}", peering_userspace::EBPF_OBJECT.len());
}
