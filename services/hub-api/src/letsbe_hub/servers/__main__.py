from letsbe_hub.servers.worker import main

if __name__ == "__main__":
    main()
